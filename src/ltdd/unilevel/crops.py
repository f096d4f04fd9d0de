"""Square random-resized crops, resized to the full image (bilinear), vectorised."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_crop_boxes(
    n: int, scale: tuple[float, float], generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Per crop: side (fraction of the image side, √area) and centre (cx, cy) in [−1, 1] coords.

    Area fraction ~ U(scale); the square box lies inside the image.
    """
    lo, hi = scale
    area = lo + (hi - lo) * torch.rand(n, generator=generator)
    side = area.sqrt()
    room = 1.0 - side  # in [-1, 1] coordinates the centre may move ±(1 − side)
    cx = (2 * torch.rand(n, generator=generator) - 1) * room
    cy = (2 * torch.rand(n, generator=generator) - 1) * room
    return side, cx, cy


def apply_crops(images: Tensor, side: Tensor, cx: Tensor, cy: Tensor, flip: Tensor | None = None):
    """Crop each image to its box, resize to full size; `flip` (bool per image) mirrors it."""
    n = len(images)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    sx = side.to(images)
    if flip is not None:
        sx = torch.where(flip.to(images.device), -sx, sx)
    theta[:, 0, 0], theta[:, 1, 1] = sx, side.to(images)
    theta[:, 0, 2], theta[:, 1, 2] = cx.to(images), cy.to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(
    images: Tensor,
    scale: tuple[float, float],
    generator: torch.Generator,
    flip: bool = False,
    shared: bool = False,
) -> Tensor:
    """Random square crops of `images`; `shared` uses one draw for the whole batch (recovery)."""
    n = 1 if shared else len(images)
    side, cx, cy = sample_crop_boxes(n, scale, generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else None
    if shared:
        side, cx, cy = (v.expand(len(images)) for v in (side, cx, cy))
        flips = flips.expand(len(images)) if flips is not None else None
    return apply_crops(images, side, cx, cy, flips)
