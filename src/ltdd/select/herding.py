"""Herding selection (Welling 2009, as in DC and DeepCore): match each class's feature mean.

Per class, step k adds the not yet chosen sample x minimising ||mu - (S_k + x) / (k + 1)||, where
mu is the class mean and S_k the sum of the k features chosen so far; ties go to the lowest index,
so the result is deterministic. DeepCore (`deepcore/methods/herding.py` @4312342) takes the argmax
of this distance, which selects away from the mean; we follow the algorithm as published.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ltdd.select.features import select_per_class


def herding_order(features: np.ndarray, budget: int) -> np.ndarray:
    """Positions of the first `budget` herding picks among the rows of `features` (n, F)."""
    mean = features.mean(axis=0)
    total = np.zeros_like(mean)
    taken = np.zeros(len(features), dtype=bool)
    order = np.empty(budget, dtype=np.int64)
    for k in range(budget):
        target = (k + 1) * mean - total
        gap = ((features - target) ** 2).sum(axis=1)
        gap[taken] = np.inf
        order[k] = int(np.argmin(gap))
        taken[order[k]] = True
        total += features[order[k]]
    return order


def select_herding(
    features: Tensor | np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    ipc: int,
    tail_policy: str = "duplicate",
) -> np.ndarray:
    """Indices of `ipc` herding-selected images per class (classes in order); see TAIL_POLICIES."""
    return select_per_class(
        features, labels, num_classes, ipc, tail_policy, lambda x, k, _c: herding_order(x, k)
    )
