"""ConvNet family (reference §3.1): `depth` blocks of conv 3×3, norm, activation, 2×2 pooling.

There is no global pooling: the classifier sees width·(H/2^depth)·(W/2^depth) features. The first
conv is padded by 3 instead of 1 for 1×28×28 inputs, so (Fashion-)MNIST acts as 32×32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ltdd.models.layers import (
    ImageClassifier,
    check_positive,
    first_conv_padding,
    make_act,
    make_norm,
    make_pool,
)
from ltdd.models.registry import MODELS


class ConvNet(ImageClassifier):
    """The distillation ConvNet; defaults are the reference's (128 wide, depth 3, instance norm)."""

    def __init__(
        self,
        num_classes: int,
        image_shape: Sequence[int],
        width: int = 128,
        depth: int = 3,
        norm: str = "instance",
        act: str = "relu",
        pool: str = "avg",
    ) -> None:
        check_positive("width", width)
        check_positive("depth", depth)
        layers: list[nn.Module] = []
        in_channels = image_shape[0]
        for block in range(depth):
            padding = first_conv_padding(image_shape, 1) if block == 0 else 1
            layers += [
                nn.Conv2d(in_channels, width, kernel_size=3, padding=padding),
                make_norm(norm, width),
                make_act(act),
                make_pool(pool),
            ]
            in_channels = width
        super().__init__(nn.Sequential(*layers), num_classes, image_shape)


@MODELS.register("convnet")
def convnet(num_classes: int, image_shape: Sequence[int], **overrides: Any) -> ConvNet:
    """ConvNet: width 128, depth 3, instance norm, ReLU, average pooling."""
    return ConvNet(num_classes, image_shape, **overrides)


@MODELS.register("convnet_d4")
def convnet_d4(num_classes: int, image_shape: Sequence[int], **overrides: Any) -> ConvNet:
    """ConvNetD4: the depth-4 ConvNet used for 64×64 inputs (Tiny-ImageNet)."""
    return ConvNet(num_classes, image_shape, **{"depth": 4, **overrides})


@MODELS.register("convnet_bn")
def convnet_bn(num_classes: int, image_shape: Sequence[int], **overrides: Any) -> ConvNet:
    """ConvNetBN: ConvNet with batch norm."""
    return ConvNet(num_classes, image_shape, **{"norm": "batch", **overrides})
