"""`CompiledForShape`: a function run through `torch.compile` for one input shape, else eagerly.

Compilation is a pure speed option: the compiled function computes the same values as the
eager one up to float rounding (fused kernels sum in another order). It is compiled for the
shapes of the first call only (`dynamic=False`), so the one short last batch of an epoch runs
eagerly instead of paying a second compilation. When compilation is unavailable (no C++
compiler, an unsupported platform or op) the first call logs one warning and the function runs
eagerly from then on; an error that the eager function raises too is a bug and propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def _signature(args: tuple[Any, ...]) -> tuple:
    """Shapes, dtypes and devices of the tensor arguments: what a compiled graph is built for."""
    return tuple((a.shape, a.dtype, a.device) for a in args if isinstance(a, Tensor))


class CompiledForShape:
    """`fn(*tensors)` compiled for the first call's shapes; other shapes and failures run `fn`."""

    def __init__(self, fn: Callable[..., Tensor], name: str) -> None:
        self.fn = fn
        self.name = name
        self.signature: tuple | None = None
        self.compiled: Callable[..., Tensor] | None = None
        self.ready = False
        self.failed = False

    def __call__(self, *args: Any) -> Tensor:
        if self.failed:
            return self.fn(*args)
        signature = _signature(args)
        if self.signature is None:
            self.signature = signature
            self.compiled = torch.compile(self.fn, dynamic=False)
        if signature != self.signature:
            return self.fn(*args)
        if self.ready:
            return self.compiled(*args)  # type: ignore[misc]
        try:
            out = self.compiled(*args)  # type: ignore[misc]
        except Exception as err:  # noqa: BLE001 (any compiler failure: fall back to eager)
            self.failed = True
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            log.warning(
                "torch.compile of %s failed (%s: %s); running it eagerly (same results, slower)",
                self.name,
                type(err).__name__,
                reason,
            )
            return self.fn(*args)
        self.ready = True
        return out
