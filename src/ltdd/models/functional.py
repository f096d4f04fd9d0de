"""Flat-parameter view of a module: `ParamLayout` (built once) + `torch.func.functional_call`.

This replaces the reference's ReparamModule (§3.3) without touching the module: a flat vector
of all parameters, in `named_parameters()` order, is split into views and passed to
`functional_call`. The classifier (parameters named `classifier.*`) is the contiguous tail, so
"backbone" is `flat[:classifier_start]` and "classifier" is `flat[classifier_start:]`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ltdd.errors import UserError

GROUPS = ("backbone", "classifier")
_CLASSIFIER_PREFIX = "classifier."


class ParamLayout:
    """Names, shapes and offsets of a module's parameters inside one flat vector of length P."""

    def __init__(self, names: list[str], shapes: list[torch.Size]) -> None:
        self.names = list(names)
        self.shapes = [torch.Size(s) for s in shapes]
        self.numels = [s.numel() for s in self.shapes]
        self.offsets = [sum(self.numels[:i]) for i in range(len(self.numels))]
        self.num_params = sum(self.numels)

    @classmethod
    def from_module(cls, module: nn.Module) -> ParamLayout:
        """Layout of `module.named_parameters()`."""
        named = list(module.named_parameters())
        return cls([n for n, _ in named], [p.shape for _, p in named])

    def flatten(self, params: nn.Module | Mapping[str, Tensor]) -> Tensor:
        """A detached (P,) copy of the parameters of a module or of a name -> tensor dict."""
        tensors = dict(params.named_parameters()) if isinstance(params, nn.Module) else params
        if list(tensors) != self.names:
            raise ValueError(
                f"parameter names do not match the layout: expected {self.names[:3]}..., "
                f"got {list(tensors)[:3]}..."
            )
        for name, shape in zip(self.names, self.shapes, strict=True):
            if tensors[name].shape != shape:
                raise ValueError(
                    f"{name} has shape {tuple(tensors[name].shape)}, want {tuple(shape)}"
                )
        return torch.cat([tensors[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Name -> view of `flat` with the parameter's shape (differentiable; works under vmap)."""
        if flat.shape != (self.num_params,):
            raise ValueError(
                f"flat vector must have shape ({self.num_params},), got {tuple(flat.shape)}"
            )
        pieces = torch.split(flat, self.numels)
        return {n: p.view(s) for n, p, s in zip(self.names, pieces, self.shapes, strict=True)}

    @property
    def classifier_start(self) -> int:
        """Offset of the first classifier parameter; everything before it is the backbone."""
        is_head = [n.startswith(_CLASSIFIER_PREFIX) for n in self.names]
        if not any(is_head):
            raise ValueError("the module has no parameters named 'classifier.*'")
        first = is_head.index(True)
        if not all(is_head[first:]):
            raise ValueError("the classifier parameters are not the contiguous tail of the layout")
        return self.offsets[first]

    def group_slice(self, group: str) -> slice:
        """Slice of the flat vector holding `group` ("backbone" or "classifier")."""
        if group == "backbone":
            return slice(0, self.classifier_start)
        if group == "classifier":
            return slice(self.classifier_start, self.num_params)
        raise UserError(f"unknown parameter group {group!r}; known: {', '.join(GROUPS)}")

    def mask(self, group: str) -> Tensor:
        """Boolean (P,) mask of the parameters in `group`."""
        mask = torch.zeros(self.num_params, dtype=torch.bool)
        mask[self.group_slice(group)] = True
        return mask


def count_parameters(model: nn.Module, group: str | None = None) -> int:
    """Number of parameters of `model`, or of one group ("backbone" / "classifier")."""
    layout = ParamLayout.from_module(model)
    if group is None:
        return layout.num_params
    part = layout.group_slice(group)
    return part.stop - part.start


def functional_forward(
    model: nn.Module,
    layout: ParamLayout,
    flat: Tensor,
    x: Tensor,
    buffers: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """`model(x)` with parameters taken from `flat` (and `buffers`, default the module's own).

    Differentiable in `flat` and `x`; `torch.func.vmap` over stacked (K, P) vectors and
    (K, B, ...) inputs runs K networks at once (for models without batch norm).
    """
    state = {
        **layout.unflatten(flat),
        **dict(model.named_buffers() if buffers is None else buffers),
    }
    return functional_call(model, state, (x,))
