"""The debiased expert: any `ImageClassifier` plus GLMC's projection, prediction and balanced heads.

`forward(x)` returns the logits used for prediction (the balanced head with two heads, spec R4),
so the network drops into every place a classifier is expected (scoring, relabelling, testing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ltdd.models import create_model


class DebiasedNet(nn.Module):
    """Backbone features h; z = P·h (projection); p = Q·z (prediction); logits; optional fc_cb."""

    def __init__(self, backbone: nn.Module, num_classes: int, proj_dim: int, two_heads: bool):
        super().__init__()
        self.backbone = backbone
        dim = backbone.num_features
        self.projection = nn.Linear(dim, proj_dim)
        self.prediction = nn.Linear(proj_dim, proj_dim)
        self.balanced = nn.Linear(dim, num_classes) if two_heads else None

    def views(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """(plain logits, balanced logits or None, projection z, prediction p)."""
        h = self.backbone.features(x)
        z = self.projection(h)
        logits = self.backbone.classifier(h)
        balanced = self.balanced(h) if self.balanced is not None else None
        return logits, balanced, z, self.prediction(z)

    def features(self, x: Tensor) -> Tensor:
        """The backbone's penultimate features h (what `ltdd.select` embeds images with)."""
        return self.backbone.features(x)

    def forward(self, x: Tensor) -> Tensor:
        h = self.backbone.features(x)
        head = self.balanced if self.balanced is not None else self.backbone.classifier
        return head(h)


def build_debiased_net(
    model: str,
    num_classes: int,
    image_shape: Sequence[int],
    *,
    width: int | None,
    depth: int | None,
    proj_dim: int,
    two_heads: bool,
    seed: int,
) -> DebiasedNet:
    """A freshly initialised `DebiasedNet` whose weights depend only on `seed`."""
    backbone = create_model(model, num_classes, image_shape, seed=seed, width=width, depth=depth)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 7919)
        return DebiasedNet(backbone, num_classes, proj_dim, two_heads)


def bn_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The BatchNorm2d layers of `model` in forward order; an observer must have at least one."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
