"""Shared helpers of the unilevel tests: a tiny batch-norm observer and procedural data."""

from __future__ import annotations

import functools

import torch

from ltdd.data.dataset import DataConfig, prepare_data
from ltdd.models import create_model


@functools.lru_cache(maxsize=2)
def procedural(beta: float = 10.0):
    torch.set_num_threads(1)
    return prepare_data(DataConfig(dataset="procedural", imbalance_factor=beta))


def tiny_observer(seed: int = 0, width: int = 4) -> torch.nn.Module:
    """A width-4 ConvNet with batch norm whose BN buffers are not the identity."""
    model = create_model("convnet_bn", 10, (1, 28, 28), seed=seed, width=width)
    return model.eval()
