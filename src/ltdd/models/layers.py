"""Shared building blocks: norm, activation and pooling by name; the body + head base class.

Every model is an `ImageClassifier`: a convolutional `body`, then flatten, then one `nn.Linear`
named `classifier`. The classifier's input size is measured by a dummy forward at construction,
so one family accepts 1×28×28, 3×32×32 and 3×64×64 inputs alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ltdd.errors import UserError
from ltdd.registry import Registry

ImageShape = tuple[int, int, int]

NORMS: Registry[Callable[[int], nn.Module]] = Registry("norm")
ACTS: Registry[Callable[[], nn.Module]] = Registry("activation")
POOLS: Registry[Callable[[], nn.Module]] = Registry("pooling")


@NORMS.register("instance")
def _instance_norm(channels: int) -> nn.Module:
    """Instance norm with a learnable per-channel affine map, as the reference's GroupNorm(C, C)."""
    return nn.GroupNorm(channels, channels, affine=True)


@NORMS.register("batch")
def _batch_norm(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels)


@NORMS.register("none")
def _no_norm(channels: int) -> nn.Module:
    return nn.Identity()


ACTS.register("relu")(nn.ReLU)
ACTS.register("leakyrelu")(nn.LeakyReLU)
ACTS.register("sigmoid")(nn.Sigmoid)


@POOLS.register("avg")
def _avg_pool() -> nn.Module:
    return nn.AvgPool2d(kernel_size=2, stride=2)


@POOLS.register("max")
def _max_pool() -> nn.Module:
    return nn.MaxPool2d(kernel_size=2, stride=2)


@POOLS.register("none")
def _no_pool() -> nn.Module:
    return nn.Identity()


def make_norm(name: str, channels: int) -> nn.Module:
    """A 2-d normalisation layer by name: `instance`, `batch` or `none`."""
    return NORMS.get(name)(channels)


def make_act(name: str) -> nn.Module:
    """An activation layer by name: `relu`, `leakyrelu` or `sigmoid`."""
    return ACTS.get(name)()


def make_pool(name: str) -> nn.Module:
    """A 2×2 stride-2 pooling layer by name: `avg`, `max` or `none`."""
    return POOLS.get(name)()


def first_conv_padding(image_shape: Sequence[int], padding: int) -> int:
    """Padding of a model's first conv: 2 more for 1×28×28 inputs, so they act as 32×32 ones."""
    return padding + 2 if tuple(image_shape) == (1, 28, 28) else padding


def check_positive(name: str, value: object) -> int:
    """Return `value` if it is a positive int, else raise a UserError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"model option {name} must be a positive integer, got {value!r}")
    return value


def infer_feature_dim(body: nn.Module, image_shape: Sequence[int]) -> int:
    """Length of `body(x).flatten(1)` per input of `image_shape` (dummy forward, eval mode)."""
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            out = body(torch.zeros(2, *image_shape))
    except (RuntimeError, ValueError) as err:
        raise UserError(
            f"this model cannot take inputs of shape {tuple(image_shape)}: {err}"
        ) from None
    finally:
        body.train(was_training)
    if out.numel() == 0:
        raise UserError(f"inputs of shape {tuple(image_shape)} are too small for this model")
    return out[0].numel()


class ImageClassifier(nn.Module):
    """`body` (conv layers), flatten, then `classifier: nn.Linear(num_features, num_classes)`.

    The classifier is created last, so its weight and bias are the tail of `parameters()`.
    """

    def __init__(self, body: nn.Module, num_classes: int, image_shape: Sequence[int]) -> None:
        super().__init__()
        check_positive("num_classes", num_classes)
        self.body = body
        self.num_features = infer_feature_dim(body, image_shape)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features, flattened to (B, num_features)."""
        return self.body(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
