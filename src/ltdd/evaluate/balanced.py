"""Class-balanced re-sampling of a long-tailed training set (an upper-bound baseline)."""

from __future__ import annotations

import torch
from torch import Tensor


def balanced_indices(labels: Tensor, num_classes: int) -> Tensor:
    """Indices that repeat every class cyclically up to the largest class's count (classes
    with no image are skipped): each class then has the same number of draws per epoch."""
    groups = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    target = max(len(g) for g in groups)
    return torch.cat([g[torch.arange(target) % len(g)] for g in groups if len(g)])
