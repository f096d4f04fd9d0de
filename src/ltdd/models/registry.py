"""The model registry and `create_model`, the only way to build a network.

A variant is a tiny registered function `(num_classes, image_shape, **overrides) -> Family` that
fills the family's keyword arguments. The override names a variant accepts are the keyword
parameters of the family class named by its return annotation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ltdd.errors import UserError
from ltdd.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

_POSITIONAL = ("num_classes", "image_shape")


def allowed_overrides(name: str) -> list[str]:
    """Keyword options that `create_model(name, ...)` accepts (e.g. width, depth, norm, pool).

    A variant taking `**overrides` passes them to the family class named by its return
    annotation; any other builder (e.g. a user's plain function) accepts its own keywords.
    """
    builder = MODELS.get(name)
    signature = inspect.signature(builder, eval_str=True)
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        params = inspect.signature(signature.return_annotation).parameters
        return [p for p in params if p not in _POSITIONAL]
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in signature.parameters.items() if p.kind in keyword][len(_POSITIONAL) :]


def _check_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise UserError(f"image_shape must be three positive integers (C, H, W), got {shape}")
    return shape  # type: ignore[return-value]


def create_model(
    name: str,
    num_classes: int,
    image_shape: Sequence[int],
    *,
    seed: int | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build model `name` for `num_classes` classes and (C, H, W) inputs, on the CPU.

    Overrides that are None are dropped (the variant's defaults hold); an unknown one is a
    UserError listing those allowed. With `seed`, the default PyTorch initialisation draws from a
    private RNG seeded with it (the global RNG is left untouched); without, from the global RNG.
    """
    builder = MODELS.get(name)
    shape = _check_shape(image_shape)
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    allowed = allowed_overrides(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise UserError(
            f"model {name!r} has no option {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    try:
        if seed is None:
            return builder(num_classes, shape, **kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return builder(num_classes, shape, **kwargs)
    except (RuntimeError, MemoryError, OverflowError) as exc:  # e.g. width=10**12: no memory
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        options = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "default options"
        raise UserError(f"cannot build model {name!r} with {options} ({reason})") from None
