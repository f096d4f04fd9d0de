"""ADSA (spec §3): post-hoc logit adjustment of soft labels, τ chosen by class-confidence balance.

p(y | x; τ) = softmax_y(f_y(x) − τ·log π_y); c_i(τ) = mean over images of class i of p(i | x; τ);
τ* = argmin_τ std_i c_i(τ) over a grid (default [−1, 3], step 0.05) refined by golden-section
search in the best grid cell. τ = 0 is the identity. Usable on any logits: UL-LT's teacher labels,
LTDD/DATM learned label logits, teacher labels of real-image baselines.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def log_prior(train_counts: list[int] | Tensor) -> Tensor:
    """log π_y of the long-tailed training set."""
    counts = torch.as_tensor(train_counts, dtype=torch.float64)
    return (counts / counts.sum()).log().float()


def adjust(logits: Tensor, log_pi: Tensor, tau: float) -> Tensor:
    """f(x) − τ·log π."""
    return logits - tau * log_pi.to(logits)


def confidence_spread(logits: Tensor, classes: Tensor, log_pi: Tensor, tau: float) -> float:
    """Population std over classes of the class-averaged own-class probability at τ."""
    prob = torch.softmax(adjust(logits.double(), log_pi.double(), tau), dim=1)
    own = prob.gather(1, classes[:, None]).squeeze(1)
    present = torch.unique(classes)
    means = torch.stack([own[classes == c].mean() for c in present])
    return float(means.std(unbiased=False))


def search_tau(
    logits: Tensor,
    classes: Tensor,
    train_counts: list[int] | Tensor,
    tau_min: float = -1.0,
    tau_max: float = 3.0,
    step: float = 0.05,
    refine_steps: int = 30,
) -> float:
    """τ* = argmin std_i c_i(τ): grid search, then golden-section inside the best cell."""
    log_pi = log_prior(train_counts)
    grid = np.arange(tau_min, tau_max + step / 2, step)
    values = [confidence_spread(logits, classes, log_pi, float(t)) for t in grid]
    best = int(np.argmin(values))
    lo, hi = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = (confidence_spread(logits, classes, log_pi, t) for t in (a, b))
    for _ in range(refine_steps):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = confidence_spread(logits, classes, log_pi, a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = confidence_spread(logits, classes, log_pi, b)
    tau = (lo + hi) / 2
    grid_best = float(grid[best])
    if values[best] < confidence_spread(logits, classes, log_pi, tau):
        return grid_best
    return tau


def calibrate(
    logits: Tensor, classes: Tensor, train_counts: list[int] | Tensor, **search: float
) -> tuple[Tensor, float]:
    """(f − τ*·log π, τ*) for a set of soft-label logits and the class each image stands for."""
    tau = search_tau(logits, classes, train_counts, **search)
    return adjust(logits, log_prior(train_counts), tau), tau


def calibrate_set(distilled, train_counts: list[int], **search: float):
    """ADSA on a soft-label `DistilledSet` (UL-LT, LTDD/DATM learned labels, teacher-labelled
    real images): a copy with shifted label logits and `adsa_tau` in its metadata."""
    from ltdd.distilled import DistilledSet

    if distilled.label_kind != "soft":
        raise ValueError("ADSA calibrates soft labels; this set has hard labels")
    labels, tau = calibrate(distilled.labels, distilled.class_ids, train_counts, **search)
    meta = {**distilled.meta, "adsa_tau": tau}
    return DistilledSet(distilled.images, labels, distilled.lr, meta, distilled.classes)
