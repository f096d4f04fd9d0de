"""The exponential long-tailed profile and a seeded, recorded selection of indices."""

from __future__ import annotations

import hashlib

import numpy as np

from ltdd.errors import UserError


def longtail_counts(n_max: int, num_classes: int, beta: float) -> list[int]:
    """Per-class counts n_c = floor(n_max * beta^(-c/(C-1))); head = class 0, beta 1 = balanced."""
    if beta < 1:
        raise UserError(f"imbalance factor must be >= 1 (1 = balanced), got {beta}")
    if num_classes < 1 or n_max < 1:
        raise ValueError("need at least one class and one image per class")
    if num_classes == 1:
        return [n_max]
    counts = []
    for c in range(num_classes):
        exact = n_max * beta ** (-c / (num_classes - 1))
        counts.append(int(np.floor(exact + 1e-9)))  # guard 49.999999 -> 49 from float error
    return counts


def longtail_indices(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Pick counts[c] indices of class c without replacement (seeded), classes in order.

    Within a class the chosen indices keep their dataset order, so the selection is a pure function
    of (labels, counts, seed).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c, n_c in enumerate(counts):
        pool = np.flatnonzero(labels == c)
        if n_c > len(pool):
            raise UserError(
                f"class {c} has {len(pool)} images, fewer than the {n_c} the profile asks"
            )
        pick = rng.choice(len(pool), size=n_c, replace=False)
        chosen.append(pool[np.sort(pick)])
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, np.int64)


def index_sha256(indices: np.ndarray) -> str:
    """A fingerprint of a selection: sha256 of the little-endian int64 index array."""
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()
