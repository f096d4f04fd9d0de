"""GLMC's two mixed views (spec §1.2): a MixUp global and a CutMix local view, one λ per step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_lambda(generator: torch.Generator) -> float:
    """λ ~ Beta(1, 1), i.e. uniform on [0, 1] (GLMC passes no α to its mixing function)."""
    return float(torch.rand(1, generator=generator).item())


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator) -> tuple:
    """(top, bottom, left, right): side √(1−λ) of the image, centre uniform, clipped."""
    cut_h, cut_w = int(height * math.sqrt(1.0 - lam)), int(width * math.sqrt(1.0 - lam))
    cy = int(torch.randint(0, height, (1,), generator=generator).item())
    cx = int(torch.randint(0, width, (1,), generator=generator).item())
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def mixup(x: Tensor, other: Tensor, lam: float) -> Tensor:
    """λ·x + (1−λ)·other."""
    return lam * x + (1.0 - lam) * other


def cutmix(x: Tensor, other: Tensor, box: tuple) -> Tensor:
    """x with the box (top, bottom, left, right) replaced by the same box of `other`."""
    top, bottom, left, right = box
    out = x.clone()
    out[:, :, top:bottom, left:right] = other[:, :, top:bottom, left:right]
    return out


def mixed_target(y: Tensor, other: Tensor, lam: float, num_classes: int) -> Tensor:
    """λ·onehot(y) + (1−λ)·onehot(other) (GLMC does not correct λ for the clipped box)."""
    return (
        lam * F.one_hot(y, num_classes).float()
        + (1.0 - lam) * F.one_hot(other, num_classes).float()
    )
