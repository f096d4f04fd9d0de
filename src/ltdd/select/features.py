"""Features for coreset selection: a network's penultimate features, and the per-class loop.

A representation expert's final weights are a flat parameter vector (the expert store's `final`);
`model_from_flat` turns such a vector back into a network whose `features` embed images.
The flat vector holds parameters only: batch-norm running statistics stay at their initial values,
so instance-norm models (the default ConvNet) are the ones to use as feature extractors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ltdd.errors import UserError
from ltdd.models import ParamLayout, create_model
from ltdd.select.policy import fill_class

Picker = Callable[[np.ndarray, int, int], np.ndarray]
"""(class features (n, F) float64, budget <= n, class id) -> positions of the picks in the class."""


@torch.no_grad()
def extract_features(model: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """`model.features(images)` as a (N, F) CPU tensor, in eval mode, `batch_size` images at a time.

    Runs on the device of the model's parameters; the model's training mode is restored afterwards.
    """
    if batch_size <= 0:
        raise UserError(f"batch_size must be a positive number of images, got {batch_size}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model.features(images[start : start + batch_size].to(device)).cpu()
            for start in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    if not chunks:
        raise UserError("no images to extract features from")
    return torch.cat(chunks)


def model_from_flat(
    model_name: str,
    num_classes: int,
    image_shape: Sequence[int],
    flat: Tensor,
    **overrides: Any,
) -> nn.Module:
    """Build `model_name` with `create_model` and load the flat parameter vector `flat` into it."""
    model = create_model(model_name, num_classes, image_shape, **overrides)
    layout = ParamLayout.from_module(model)
    if flat.shape != (layout.num_params,):
        raise UserError(
            f"the weight vector has shape {tuple(flat.shape)} but model {model_name!r} "
            f"({num_classes} classes, image shape {tuple(image_shape)}, options {overrides}) has "
            f"{layout.num_params} parameters; use the model and options the expert was trained with"
        )
    with torch.no_grad():
        for name, value in layout.unflatten(flat.detach().cpu()).items():
            model.get_parameter(name).copy_(value)
    return model


def select_per_class(
    features: Tensor | np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    ipc: int,
    tail_policy: str,
    pick: Picker,
) -> np.ndarray:
    """Indices of `pick`'s choice of min(ipc, n_c) images per class (classes in order).

    `pick` sees each class's features in float64 in dataset order; classes with fewer than `ipc`
    images are then filled by `tail_policy` (see `ltdd.select.policy.TAIL_POLICIES`).
    """
    if ipc <= 0:
        raise UserError(f"ipc must be a positive number of images per class, got {ipc}")
    feats = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features)
    feats = feats.astype(np.float64).reshape(len(feats), -1)
    labels = np.asarray(labels)
    if labels.shape != (len(feats),):
        raise ValueError(f"{len(feats)} feature rows but labels of shape {labels.shape}")
    picks = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        budget = min(ipc, len(pool))
        chosen = pool[pick(feats[pool], budget, c)] if budget else pool
        picks.append(fill_class(chosen, ipc, tail_policy, c))
    return np.concatenate(picks).astype(np.int64)
