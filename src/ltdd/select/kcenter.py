"""K-center greedy selection (Sener & Savarese 2018): cover each class's features with few centers.

Per class, the first center is a sample drawn with `np.random.default_rng(seed)` (one generator,
one draw per non-empty class, classes in order); every further step adds the sample farthest
(Euclidean) from its nearest chosen center. A running minimum distance keeps each step O(n·F),
so a class costs O(n·k·F). Ties go to the lowest index.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ltdd.select.features import select_per_class


def kcenter_order(features: np.ndarray, budget: int, first: int) -> np.ndarray:
    """Positions of `budget` k-center greedy picks among the rows of `features`, from `first`."""
    order = np.empty(budget, dtype=np.int64)
    nearest = np.full(len(features), np.inf)
    current = first
    for k in range(budget):
        order[k] = current
        nearest = np.minimum(nearest, ((features - features[current]) ** 2).sum(axis=1))
        nearest[current] = -np.inf
        current = int(np.argmax(nearest))
    return order


def select_kcenter(
    features: Tensor | np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    ipc: int,
    seed: int,
    tail_policy: str = "duplicate",
) -> np.ndarray:
    """Indices of `ipc` k-center greedy images per class (classes in order); see TAIL_POLICIES."""
    rng = np.random.default_rng(seed)

    def pick(x: np.ndarray, budget: int, _c: int) -> np.ndarray:
        return kcenter_order(x, budget, int(rng.integers(len(x))))

    return select_per_class(features, labels, num_classes, ipc, tail_policy, pick)
