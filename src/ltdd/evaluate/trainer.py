"""Train a fresh network on a (small) labelled set with the reference evaluation protocol.

Reference-pipeline §6: SGD (momentum 0.9, weight decay 5e-4) at the set's learning rate for
`epochs + 1` passes; from pass `epochs // 2 + 1` on the learning rate is divided by 10 and a fresh
optimiser (momentum reset) is used; DSA on every batch; soft cross-entropy against softmax(logits)
for soft labels, plain cross-entropy for hard labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ltdd.allocator import keep_freed_memory
from ltdd.data.augment import DSAConfig, dsa
from ltdd.models import create_model


@dataclass(frozen=True)
class TrainConfig:
    """How a fresh evaluation network is trained (YAML section `evaluate`, minus the seeds)."""

    model: str = "convnet"
    width: int | None = field(default=None, metadata={"ge": 1})
    depth: int | None = field(default=None, metadata={"ge": 1})
    norm: str | None = field(default=None, metadata={"choices": ("instance", "batch", "none")})
    epochs: int = field(default=1000, metadata={"ge": 0})
    batch_size: int = field(default=128, metadata={"ge": 1})
    momentum: float = field(default=0.9, metadata={"ge": 0, "lt": 1})
    weight_decay: float = field(default=5e-4, metadata={"ge": 0})
    dsa: bool = True

    def model_overrides(self) -> dict:
        return {"width": self.width, "depth": self.depth, "norm": self.norm}


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c softmax(target)_c * log_softmax(logits)_c."""
    return -(F.softmax(target_logits, dim=1) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for int64 class labels, soft cross-entropy for float logit labels."""
    if labels.dtype == torch.int64:
        return F.cross_entropy(logits, labels)
    return soft_cross_entropy(logits, labels)


def build_model(
    cfg: TrainConfig, num_classes: int, image_shape: tuple, seed: int, device: torch.device
) -> nn.Module:
    """A fresh network whose initialisation depends only on `seed`."""
    model = create_model(cfg.model, num_classes, image_shape, seed=seed, **cfg.model_overrides())
    return model.to(device)


def train_network(
    images: torch.Tensor,
    labels: torch.Tensor,
    lr: float,
    num_classes: int,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    progress: bool = False,
) -> nn.Module:
    """Train a fresh `cfg.model` on (images, labels) and return it in eval mode."""
    keep_freed_memory()
    model = build_model(cfg, num_classes, tuple(images.shape[1:]), seed, device)
    generator = torch.Generator().manual_seed(seed + 1)
    images, labels = images.to(device), labels.to(device)
    dsa_config = DSAConfig() if cfg.dsa else DSAConfig(strategy="none")
    decay_at = cfg.epochs // 2 + 1

    def optimiser(rate: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            model.parameters(), lr=rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )

    opt = optimiser(lr)
    model.train()
    for epoch in tqdm(
        range(cfg.epochs + 1), desc="train", leave=False, disable=None if progress else True
    ):
        if epoch == decay_at:
            opt = optimiser(lr * 0.1)
        order = torch.randperm(len(images), generator=generator).to(device)
        for start in range(0, len(images), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            x = dsa(images[batch], generator, dsa_config)
            loss = label_loss(model(x), labels[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Top-1 class predictions of `model` on `images`."""
    device = next(model.parameters()).device
    out = [
        model(images[i : i + batch_size].to(device)).argmax(dim=1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)
