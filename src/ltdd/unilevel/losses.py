"""GLMC/UL-LT expert losses (spec §1.2, Eq. 5-6): mixture consistency and cumulative reweighting."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_weights(counts: list[int] | Tensor, q: float, norm: str = "mean_one") -> Tensor:
    """w_k ∝ r_k^(−q), normalised to mean 1 (GLMC) or to sum 1 (the paper's printed form)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    raw = (counts / counts.sum()).pow(-q)
    weights = raw / raw.sum()
    return (weights * len(counts) if norm == "mean_one" else weights).float()


def cumulative_alpha(step: int, total: int) -> float:
    """α_t = (t/T)²: 0 at the start (plain CE), 1 at the end (fully reweighted)."""
    return (step / total) ** 2 if total > 0 else 1.0


def soft_ce_per_class(logits: Tensor, target: Tensor) -> Tensor:
    """(B, C) terms −ȳ_k log p_k of the soft-label cross-entropy."""
    return -target * F.log_softmax(logits, dim=1)


def debias_loss(
    logits: Tensor,
    target: Tensor,
    weights: Tensor,
    alpha: float,
    balanced_logits: Tensor | None = None,
) -> Tensor:
    """α·Σ_k w_k(−ȳ_k log p_k) + (1−α)·Σ_k(−ȳ_k log p_k), batch mean.

    With `balanced_logits` (GLMC's two heads) the reweighted term is computed on that head and
    the plain term on `logits`.
    """
    plain = soft_ce_per_class(logits, target).sum(dim=1).mean()
    reweighted_on = logits if balanced_logits is None else balanced_logits
    weighted = (soft_ce_per_class(reweighted_on, target) * weights).sum(dim=1).mean()
    return alpha * weighted + (1.0 - alpha) * plain


def robust_loss(z1: Tensor, z2: Tensor, p1: Tensor, p2: Tensor, form: str = "simsiam") -> Tensor:
    """Symmetric mixture consistency; `simsiam`: −[cos(p1, sg z2) + cos(p2, sg z1)] (GLMC's code),
    `paper`: −[cos(z1, sg p2) + cos(z2, sg p1)] (Eq. 5 as printed; risk R2)."""
    if form == "simsiam":
        a = F.cosine_similarity(p1, z2.detach(), dim=1).mean()
        b = F.cosine_similarity(p2, z1.detach(), dim=1).mean()
    else:
        a = F.cosine_similarity(z1, p2.detach(), dim=1).mean()
        b = F.cosine_similarity(z2, p1.detach(), dim=1).mean()
    return -(a + b)
