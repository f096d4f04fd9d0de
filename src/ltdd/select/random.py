"""The random baseline: IPC real images drawn uniformly per class."""

from __future__ import annotations

import numpy as np

from ltdd.errors import UserError
from ltdd.select.policy import fill_class


def select_random(
    labels: np.ndarray, num_classes: int, ipc: int, seed: int, tail_policy: str = "duplicate"
) -> np.ndarray:
    """Indices of `ipc` random images per class (classes in order), seeded; see TAIL_POLICIES."""
    if ipc <= 0:
        raise UserError(f"ipc must be a positive number of images per class, got {ipc}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picks = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        chosen = pool[rng.permutation(len(pool))[:ipc]]
        picks.append(fill_class(chosen, ipc, tail_policy, c))
    return np.concatenate(picks).astype(np.int64)
