"""The student network run functionally on a flat parameter vector split in two parts.

`forward(frozen, free, x)` runs the model with parameters `cat(frozen, free)` without building
that concatenation: each parameter is a view of the part it lies in, so a frozen backbone
(detached, no grad) never gets a parameter gradient while the free classifier does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ltdd.models import ParamLayout


@dataclass(frozen=True, eq=False)
class Student:
    """A model and its flat layout; `free_start` and `mask` name the phase's U and S."""

    model: nn.Module
    layout: ParamLayout

    def forward(self, frozen: Tensor, free: Tensor, x: Tensor) -> Tensor:
        """Logits of `x` with parameters `cat(frozen, free)`, split at a parameter boundary."""
        split = frozen.numel()
        params: dict[str, Tensor] = {}
        for name, offset, numel, shape in zip(
            self.layout.names,
            self.layout.offsets,
            self.layout.numels,
            self.layout.shapes,
            strict=True,
        ):
            if offset < split < offset + numel:
                raise ValueError(f"split {split} falls inside parameter {name}")
            part, start = (frozen, offset) if offset < split else (free, offset - split)
            params[name] = part[start : start + numel].view(shape)
        return functional_call(self.model, {**params, **dict(self.model.named_buffers())}, (x,))

    def free_start(self, update: str) -> int:
        """First updated coordinate: 0 for U = all, `classifier_start` for U = classifier."""
        return 0 if update == "all" else self.layout.classifier_start

    def mask(self, group: str) -> Tensor:
        """The matched-coordinate mask S of `group` ("all", "backbone", "classifier")."""
        if group == "all":
            return torch.ones(self.layout.num_params, dtype=torch.bool)
        return self.layout.mask(group)
