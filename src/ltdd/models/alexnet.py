"""AlexNet as in the DC/MTT code base: five convs, no norm, max pooling, one linear classifier.

Adapted to any input size: the first conv has stride 2 for inputs larger than 32×32 (as the
reference does for 64×64) and the classifier size is measured, not hard-coded to 192·4·4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ltdd.models.layers import ImageClassifier, first_conv_padding, make_act, make_norm, make_pool
from ltdd.models.registry import MODELS


class AlexNet(ImageClassifier):
    """conv5-128, pool, conv5-192, pool, conv3-256, conv3-192, conv3-192, pool, linear."""

    def __init__(
        self,
        num_classes: int,
        image_shape: Sequence[int],
        norm: str = "none",
        act: str = "relu",
        pool: str = "max",
    ) -> None:
        stride = 2 if image_shape[1] > 32 else 1
        padding = first_conv_padding(image_shape, 2)
        specs = [  # (out channels, kernel, padding, stride, pool after)
            (128, 5, padding, stride, True),
            (192, 5, 2, 1, True),
            (256, 3, 1, 1, False),
            (192, 3, 1, 1, False),
            (192, 3, 1, 1, True),
        ]
        layers: list[nn.Module] = []
        in_channels = image_shape[0]
        for out_channels, kernel, pad, conv_stride, pooled in specs:
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, stride=conv_stride, padding=pad),
                make_norm(norm, out_channels),
                make_act(act),
            ]
            if pooled:
                layers.append(make_pool(pool))
            in_channels = out_channels
        super().__init__(nn.Sequential(*layers), num_classes, image_shape)


@MODELS.register("alexnet")
def alexnet(num_classes: int, image_shape: Sequence[int], **overrides: Any) -> AlexNet:
    """AlexNet without normalisation."""
    return AlexNet(num_classes, image_shape, **overrides)
