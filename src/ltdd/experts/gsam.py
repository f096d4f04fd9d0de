"""GSAM (surrogate-gap guided sharpness-aware minimisation) on one flat parameter vector.

Reference-pipeline §4.3 (`buffer/gsam/gsam.py`). The functions act on one expert's flat (P,)
trainable vector, so norms run over every trainable parameter at once; under `torch.func.vmap`
they act per expert.
"""

from __future__ import annotations

from torch import Tensor

EPS = 1e-12


def perturbation(w: Tensor, g: Tensor, rho: float, adaptive: bool) -> Tensor:
    """Ascent step e: adaptive s = ρ/(‖|w|⊙g‖ + ε), e = s·g⊙w²; plain s = ρ/(‖g‖ + ε), e = s·g."""
    if adaptive:
        scale = rho / ((w.abs() * g).norm() + EPS)
        return scale * g * w * w
    return rho / (g.norm() + EPS) * g


def decompose(g: Tensor, g_s: Tensor, alpha: float) -> Tensor:
    """The GSAM gradient g_s − α·g_⊥, with g_⊥ the part of g orthogonal to the perturbed g_s."""
    g_norm = g.norm()
    gs_norm = g_s.norm()
    cosine = (g * g_s).sum() / (g_norm * gs_norm + EPS)
    vertical = g - cosine * g_norm * g_s / (gs_norm + EPS)
    return g_s - alpha * vertical
