"""VGG11 as in the DC/MTT code base: conv3 + norm + activation stacks with max pooling.

The reference ends with AvgPool2d(kernel 1), stride 2 for 64×64 inputs (it keeps every other
pixel of the 2×2 map); we do the same for inputs larger than 32×32. The classifier size is
measured, so 1×28×28 (padded to 32×32 by the first conv) and 3×64×64 both give 512 features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ltdd.models.layers import ImageClassifier, first_conv_padding, make_act, make_norm, make_pool
from ltdd.models.registry import MODELS

VGG11_LAYOUT: tuple[int | str, ...] = (
    64,
    "M",
    128,
    "M",
    256,
    256,
    "M",
    512,
    512,
    "M",
    512,
    512,
    "M",
)


class VGG(ImageClassifier):
    """VGG with `layout` (ints = conv3 widths, "M" = pooling); instance norm by default."""

    def __init__(
        self,
        num_classes: int,
        image_shape: Sequence[int],
        layout: Sequence[int | str] = VGG11_LAYOUT,
        norm: str = "instance",
        act: str = "relu",
        pool: str = "max",
    ) -> None:
        layers: list[nn.Module] = []
        in_channels = image_shape[0]
        for item in layout:
            if item == "M":
                layers.append(make_pool(pool))
                continue
            padding = first_conv_padding(image_shape, 1) if not layers else 1
            layers += [
                nn.Conv2d(in_channels, int(item), kernel_size=3, padding=padding),
                make_norm(norm, int(item)),
                make_act(act),
            ]
            in_channels = int(item)
        layers.append(nn.AvgPool2d(kernel_size=1, stride=2 if image_shape[1] > 32 else 1))
        super().__init__(nn.Sequential(*layers), num_classes, image_shape)


@MODELS.register("vgg11")
def vgg11(num_classes: int, image_shape: Sequence[int], **overrides: Any) -> VGG:
    """VGG11 with instance norm (the reference's default)."""
    return VGG(num_classes, image_shape, **overrides)


@MODELS.register("vgg11_bn")
def vgg11_bn(num_classes: int, image_shape: Sequence[int], **overrides: Any) -> VGG:
    """VGG11 with batch norm."""
    return VGG(num_classes, image_shape, **{"norm": "batch", **overrides})
