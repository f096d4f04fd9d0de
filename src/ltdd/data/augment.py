"""DSA: differentiable Siamese augmentation (reference-pipeline §2.3), with replayable draws.

Each call picks ONE op group uniformly from the strategy (aug_mode 'S') and draws per-sample
parameters for it from an explicit `torch.Generator`. Drawing (`sample_dsa`) is separate from
applying (`apply_dsa`), so the same draw can be replayed exactly, e.g. in the TESLA recomputation.
`apply_dsa` is vectorised over the batch and differentiable in the images.

Parameters are stored in the form the ops consume (brightness offset, saturation and contrast
factors, integer shifts, cutout rectangle, flip flags, 2x3 affine matrices), so applying a draw
needs no config. A new op group is one `_sample_*`/`_apply_*` pair registered in `DSA_OPS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ltdd.registry import Registry


@dataclass(frozen=True)
class DSAConfig:
    """DSA settings; defaults are the reference `ParamDiffAug` (MTT/DATM/LTDD)."""

    strategy: str = "color_crop_cutout_flip_scale_rotate"  # groups joined by "_", or "none"
    prob_flip: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})
    ratio_scale: float = field(default=1.2, metadata={"ge": 1.0})
    ratio_rotate: float = field(default=15.0, metadata={"ge": 0.0, "le": 180.0})
    ratio_crop_pad: float = field(default=0.125, metadata={"ge": 0.0, "le": 1.0})
    ratio_cutout: float = field(default=0.5, metadata={"gt": 0.0, "le": 1.0})
    brightness: float = field(default=1.0, metadata={"ge": 0.0})
    saturation: float = field(default=2.0, metadata={"ge": 0.0})
    contrast: float = field(default=0.5, metadata={"ge": 0.0})


@dataclass(frozen=True, eq=False)
class DSADraw:
    """One draw: the chosen op group and its per-sample parameters (first dim = `n`)."""

    group: str
    params: dict[str, Tensor]
    n: int
    image_shape: tuple[int, int, int]

    def to(self, device: torch.device | str) -> DSADraw:
        """The same draw with its tensors on `device`."""
        params = {k: v.to(device) for k, v in self.params.items()}
        return DSADraw(self.group, params, self.n, self.image_shape)

    def index(self, idx: Tensor | slice | list[int] | int) -> DSADraw:
        """The draw restricted to the samples selected by `idx` (as `x[idx]` selects images)."""
        sel = torch.arange(self.n)[idx.cpu() if isinstance(idx, Tensor) else idx].reshape(-1)
        params = {k: v[sel.to(v.device)] for k, v in self.params.items()}
        return DSADraw(self.group, params, sel.numel(), self.image_shape)


Sampler = Callable[[int, tuple[int, int, int], torch.Generator, DSAConfig], dict[str, Tensor]]
Applier = Callable[[Tensor, dict[str, Tensor]], Tensor]


@dataclass(frozen=True)
class DSAOp:
    """An op group: how to draw its per-sample parameters and how to apply them."""

    sample: Sampler
    apply: Applier


DSA_OPS: Registry[DSAOp] = Registry("DSA op group")


def _uniform(n: int, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device)


def _randint(low: int, high: int, n: int, generator: torch.Generator) -> Tensor:
    """Integers in [low, high) (high exclusive), one per sample."""
    return torch.randint(low, high, (n,), generator=generator, device=generator.device)


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view(-1, 1, 1, 1)


def _sample_none(n, image_shape, generator, config) -> dict[str, Tensor]:
    return {}


def _apply_none(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    return x


def _sample_color(n, image_shape, generator, config) -> dict[str, Tensor]:
    return {
        "brightness": (_uniform(n, generator) - 0.5) * config.brightness,
        "saturation": _uniform(n, generator) * config.saturation,
        "contrast": _uniform(n, generator) + config.contrast,
    }


def _apply_color(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    """brightness `x + b`, then saturation and contrast: `(x - mean) * f + mean`."""
    x = x + _per_sample(params["brightness"], x)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _per_sample(params["saturation"], x) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_sample(params["contrast"], x) + mean


def _sample_crop(n, image_shape, generator, config) -> dict[str, Tensor]:
    _, h, w = image_shape
    sh, sw = int(h * config.ratio_crop_pad + 0.5), int(w * config.ratio_crop_pad + 0.5)
    return {
        "shift_h": _randint(-sh, sh + 1, n, generator),
        "shift_w": _randint(-sw, sw + 1, n, generator),
    }


def _apply_crop(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    """`out[i, j] = x[i + shift_h, j + shift_w]`, zero where that falls outside the image."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None] + params["shift_h"][:, None] + 1
    cols = torch.arange(w, device=x.device)[None] + params["shift_w"][:, None] + 1
    rows, cols = rows.clamp(0, h + 1), cols.clamp(0, w + 1)  # index 0 and h+1 are the zero pad
    flat_idx = (rows[:, :, None] * (w + 2) + cols[:, None, :]).reshape(b, 1, h * w)
    padded = F.pad(x, (1, 1, 1, 1)).reshape(b, c, (h + 2) * (w + 2))
    return padded.gather(2, flat_idx.expand(b, c, h * w)).reshape(b, c, h, w)


def _sample_cutout(n, image_shape, generator, config) -> dict[str, Tensor]:
    """Reference: centre ~ U{0..H - side%2} (inclusive), square of `side`, clipped to the image."""
    _, h, w = image_shape
    side_h, side_w = int(h * config.ratio_cutout + 0.5), int(w * config.ratio_cutout + 0.5)
    top = _randint(0, h + 1 - side_h % 2, n, generator) - side_h // 2
    left = _randint(0, w + 1 - side_w % 2, n, generator) - side_w // 2
    return {
        "top": top.clamp_min(0),
        "bottom": (top + side_h).clamp_max(h),
        "left": left.clamp_min(0),
        "right": (left + side_w).clamp_max(w),
    }


def _apply_cutout(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    """Zero the rectangle rows [top, bottom) x cols [left, right) of each sample."""
    _, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None]
    cols = torch.arange(w, device=x.device)[None]
    in_rows = (rows >= params["top"][:, None]) & (rows < params["bottom"][:, None])
    in_cols = (cols >= params["left"][:, None]) & (cols < params["right"][:, None])
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


def _sample_flip(n, image_shape, generator, config) -> dict[str, Tensor]:
    return {"flip": _uniform(n, generator) < config.prob_flip}


def _apply_flip(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    return torch.where(params["flip"].view(-1, 1, 1, 1), x.flip(3), x)


def _sample_scale(n, image_shape, generator, config) -> dict[str, Tensor]:
    r = config.ratio_scale
    sx = _uniform(n, generator) * (r - 1.0 / r) + 1.0 / r
    sy = _uniform(n, generator) * (r - 1.0 / r) + 1.0 / r
    theta = torch.zeros(n, 2, 3, device=sx.device)
    theta[:, 0, 0], theta[:, 1, 1] = sx, sy
    return {"theta": theta}


def _sample_rotate(n, image_shape, generator, config) -> dict[str, Tensor]:
    angle = (_uniform(n, generator) - 0.5) * 2 * config.ratio_rotate / 180 * math.pi
    cos, sin = angle.cos(), angle.sin()
    theta = torch.zeros(n, 2, 3, device=angle.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    return {"theta": theta}


def _apply_affine(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    """Bilinear resampling through per-sample 2x3 matrices (zero padding, align_corners=True)."""
    grid = F.affine_grid(params["theta"].to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


DSA_OPS.register("none")(DSAOp(_sample_none, _apply_none))
DSA_OPS.register("color")(DSAOp(_sample_color, _apply_color))
DSA_OPS.register("crop")(DSAOp(_sample_crop, _apply_crop))
DSA_OPS.register("cutout")(DSAOp(_sample_cutout, _apply_cutout))
DSA_OPS.register("flip")(DSAOp(_sample_flip, _apply_flip))
DSA_OPS.register("scale")(DSAOp(_sample_scale, _apply_affine))
DSA_OPS.register("rotate")(DSAOp(_sample_rotate, _apply_affine))


def strategy_groups(strategy: str) -> list[str]:
    """The op groups of a strategy string such as 'color_crop'; unknown names are a UserError."""
    groups = strategy.split("_")
    for name in groups:
        DSA_OPS.get(name)
    return groups


def sample_dsa(
    n: int,
    image_shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator,
    config: DSAConfig = DSAConfig(),
) -> DSADraw:
    """Choose one op group uniformly from the strategy, then draw its per-sample parameters.

    All draws use `generator` (on the generator's device).
    """
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape}")
    groups = strategy_groups(config.strategy)
    pick = int(_randint(0, len(groups), 1, generator).item())
    group = groups[pick]
    params = DSA_OPS.get(group).sample(n, image_shape, generator, config)
    return DSADraw(group, params, n, image_shape)


def apply_dsa(x: Tensor, draw: DSADraw) -> Tensor:
    """Apply a draw to images (N, C, H, W): pure and differentiable in x; same draw, same output."""
    if x.shape[0] != draw.n or tuple(x.shape[1:]) != draw.image_shape:
        raise ValueError(
            f"draw is for {draw.n} images of shape {draw.image_shape}, got x of shape "
            f"{tuple(x.shape)}"
        )
    return DSA_OPS.get(draw.group).apply(x, draw.to(x.device).params)


def dsa(x: Tensor, generator: torch.Generator, config: DSAConfig = DSAConfig()) -> Tensor:
    """Draw for x with `generator` and apply: `sample_dsa` then `apply_dsa`."""
    return apply_dsa(x, sample_dsa(len(x), x.shape[1:], generator, config))
