"""ResNet18, CIFAR style (reference §3.2): 3×3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2].

Widths 64/128/256/512, stride 2 at the first block of stages 2-4, 1×1 conv + norm shortcut when
the shape changes; convs have no bias. Unlike the reference's `avg_pool2d(out, 4)`, which assumes
a 4×4 final map (32×32 inputs), we average adaptively to 1×1, so 28×28 and 64×64 inputs also give
512 features. On 32×32 inputs the two are identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ltdd.models.layers import ImageClassifier, make_act, make_norm
from ltdd.models.registry import MODELS


class BasicBlock(nn.Module):
    """conv3-norm-act-conv3-norm plus shortcut, then activation."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.norm2 = make_norm(norm, planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), make_norm(norm, planes)
            )
        self.act1 = make_act(act)
        self.act2 = make_act(act)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(ImageClassifier):
    """CIFAR-style ResNet with BasicBlocks; `blocks` per stage, widths doubling from 64."""

    def __init__(
        self,
        num_classes: int,
        image_shape: Sequence[int],
        blocks: Sequence[int] = (2, 2, 2, 2),
        norm: str = "instance",
        act: str = "relu",
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(image_shape[0], 64, 3, stride=1, padding=1, bias=False),
            make_norm(norm, 64),
            make_act(act),
        ]
        in_planes = 64
        for stage, count in enumerate(blocks):
            planes = 64 * 2**stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride, norm, act))
                in_planes = planes
        layers.append(nn.AdaptiveAvgPool2d(1))
        super().__init__(nn.Sequential(*layers), num_classes, image_shape)


@MODELS.register("resnet18")
def resnet18(num_classes: int, image_shape: Sequence[int], **overrides: Any) -> ResNet:
    """ResNet18 with instance norm (GroupNorm(C, C)), the reference's default."""
    return ResNet(num_classes, image_shape, **overrides)


@MODELS.register("resnet18_bn")
def resnet18_bn(num_classes: int, image_shape: Sequence[int], **overrides: Any) -> ResNet:
    """ResNet18 with batch norm."""
    return ResNet(num_classes, image_shape, **{"norm": "batch", **overrides})
