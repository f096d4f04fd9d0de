"""Frozen activation patterns: record where piecewise-linear activations are active in one
forward pass, then replay those patterns in later passes at nearby parameters.

With the patterns of W frozen, a ReLU network is smooth in its parameters around W, and its
derivatives there are the ones autograd takes (ReLU'(z) = [z > 0]). A finite difference in W
taken with frozen patterns therefore converges to the autograd value; without them, units that
switch between W - eps*c and W + eps*c add an error that grows as eps shrinks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_hook

from ltdd.errors import UserError

_KINKED = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d, nn.Hardtanh, nn.ELU)


class ActivationPatterns:
    """The active sets of every nn.ReLU / nn.LeakyReLU call of one forward pass, in call order."""

    def __init__(self, masks: list[Tensor] | None = None) -> None:
        self.masks: list[Tensor] = list(masks or [])

    @contextmanager
    def record(self) -> Iterator[None]:
        """Within the block, every ReLU call appends its mask `input > 0` (as 0/1 floats: the
        replay multiplies by it without converting a bool tensor on every call)."""
        self.masks = []

        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if _check(module):
                x = args[0].detach()
                self.masks.append((x > 0).to(x.dtype))

        with _global_hook(hook):
            yield

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Within the block, the k-th ReLU call uses the k-th recorded mask instead of its own."""
        calls = iter(self.masks)

        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
            if not _check(module):
                return None
            mask = next(calls, None)
            x = args[0]
            if mask is None or mask.shape != x.shape:
                raise RuntimeError("the replayed forward differs from the recorded one")
            slope = getattr(module, "negative_slope", 0.0)
            return x * (mask + (1.0 - mask) * slope) if slope else x * mask

        with _global_hook(hook):
            yield

    def pack(self) -> PackedPatterns:
        """The recorded masks at one bit per element (32 times smaller), for keeping."""
        return PackedPatterns(
            tuple(_pack_bits(m > 0) for m in self.masks),
            tuple(m.shape for m in self.masks),
            tuple(m.dtype for m in self.masks),
        )


_BITS = 2 ** torch.arange(8, dtype=torch.uint8)


def _pack_bits(mask: Tensor) -> Tensor:
    """A bool tensor as uint8 bytes, eight elements per byte (zero-padded at the end)."""
    flat = mask.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8).to(torch.uint8) * _BITS.to(flat.device)).sum(1, dtype=torch.uint8)


@dataclass(frozen=True)
class PackedPatterns:
    """`ActivationPatterns` stored at one bit per element; `unpack` restores them exactly."""

    bits: tuple[Tensor, ...]
    shapes: tuple[torch.Size, ...]
    dtypes: tuple[torch.dtype, ...]

    def unpack(self) -> ActivationPatterns:
        masks = []
        for bits, shape, dtype in zip(self.bits, self.shapes, self.dtypes, strict=True):
            flat = (bits[:, None] & _BITS.to(bits.device)).ne(0).view(-1)[: math.prod(shape)]
            masks.append(flat.view(shape).to(dtype))
        return ActivationPatterns(masks)


def _check(module: nn.Module) -> bool:
    """True for the activations handled here; a UserError for other non-smooth modules."""
    if isinstance(module, _KINKED):
        raise UserError(
            f"gradient tesla_fd supports ReLU/LeakyReLU as the only non-smooth layers, not "
            f"{type(module).__name__}; use gradient=tesla"
        )
    if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
        if module.inplace:
            raise UserError("gradient tesla_fd needs out-of-place activations; use gradient=tesla")
        return True
    return False


@contextmanager
def _global_hook(hook) -> Iterator[None]:
    handle = register_module_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
