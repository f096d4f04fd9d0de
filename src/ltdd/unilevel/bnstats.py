"""Capture the inputs of a network's BatchNorm layers and pool them per class (vectorised).

"mean/var over a set" of a BN input a_l (B, K, H, W) is per channel, pooled over samples and
spatial positions (spec §1.1). Per class this is computed with a row-normalised one-hot matrix,
never a Python loop over classes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ltdd.unilevel.network import bn_layers


@contextmanager
def bn_inputs(model: nn.Module) -> Iterator[list[Tensor]]:
    """While active, each forward appends every BN layer's input (forward order) to the list."""
    captured: list[Tensor] = []
    layers = bn_layers(model)
    if not layers:
        raise ValueError("the observer has no BatchNorm2d layer")
    handles = [
        layer.register_forward_hook(lambda m, i, o: captured.append(i[0])) for layer in layers
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def sample_moments(a: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample spatial mean and second raw moment, each (B, K)."""
    return a.mean(dim=(2, 3)), (a * a).mean(dim=(2, 3))


def class_average(values: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """(C, K) per-class means of the rows of `values` (B, K) and the (C,) counts (0 rows → 0)."""
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(values.dtype)  # (B, C)
    counts = onehot.sum(dim=0)
    sums = onehot.T @ values
    return sums / counts.clamp_min(1)[:, None], counts


def batch_stats(a: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (population) variance pooled over samples and positions."""
    return a.mean(dim=(0, 2, 3)), a.var(dim=(0, 2, 3), unbiased=False)


def class_stats(a: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(C, K) per-class pooled mean and variance of a BN input, and the (C,) counts."""
    mean, second = sample_moments(a)
    class_mean, counts = class_average(mean, labels, num_classes)
    class_second, _ = class_average(second, labels, num_classes)
    return class_mean, class_second - class_mean * class_mean, counts
