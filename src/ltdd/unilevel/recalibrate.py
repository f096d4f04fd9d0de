"""Fair BN recalibration (spec §1.3, Eq. 8-9): exact per-class statistics, balanced targets.

Per class c and BN layer l a running mean μ and second raw moment s are updated with the dynamic
momentum α = B_c / (N_c + B_c), so the final values are the exact pooled moments of every class-c
sample whatever the batch order or size. The global target is the class-balanced mixture
(μ = mean_c μ_c, σ² = mean_c(σ²_c + μ_c²) − μ²), or the paper-literal mean within-class variance.
`mode="ema"` is the "w/o recalibration" ablation: targets are the observer's own BN running
statistics, and per-class statistics use BN's fixed momentum 0.1 (which over-weights late batches).

When the targets are written into the BN buffers, the inputs of layer l depend on the buffers of
the layers before it. `passes="layerwise"` therefore measures layer l only after layers < l hold
their new buffers (one pass per BN layer, each stopped at its layer), so every target is what the
observer of recovery would show on real data. `passes="single"` is one pass with the trained
buffers, then writing them all: the targets of layers 2.. then describe a network that no longer
exists (the spec's reading, kept as a switch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ltdd.unilevel.bnstats import bn_inputs, class_average, sample_moments
from ltdd.unilevel.network import bn_layers

FIXED_MOMENTUM = 0.1


@dataclass
class BNTargets:
    """Alignment targets per BN layer: global (K,) and per-class (C, K) means and variances."""

    global_mean: list[Tensor]
    global_var: list[Tensor]
    class_mean: list[Tensor]
    class_var: list[Tensor]
    counts: Tensor

    def to(self, device: torch.device) -> BNTargets:
        move = lambda xs: [x.to(device) for x in xs]  # noqa: E731
        return BNTargets(
            move(self.global_mean),
            move(self.global_var),
            move(self.class_mean),
            move(self.class_var),
            self.counts,
        )


class ClassMoments:
    """Running per-class first and second moments of one layer, with dynamic or fixed momentum."""

    def __init__(self, num_classes: int, channels: int, dynamic: bool = True) -> None:
        self.mean = torch.zeros(num_classes, channels, dtype=torch.float64)
        self.second = torch.zeros(num_classes, channels, dtype=torch.float64)
        self.count = torch.zeros(num_classes, dtype=torch.float64)
        self.dynamic = dynamic

    def update(self, a: Tensor, labels: Tensor) -> None:
        """Fold in one batch of BN inputs a (B, K, H, W) with class labels (B,)."""
        mean, second = sample_moments(a.double())
        num_classes = len(self.count)
        batch_mean, batch_count = class_average(mean, labels, num_classes)
        batch_second, _ = class_average(second, labels, num_classes)
        batch_count = batch_count.cpu()
        present = batch_count > 0
        if self.dynamic:
            alpha = batch_count / (self.count + batch_count).clamp_min(1)
        else:
            alpha = torch.where(self.count > 0, FIXED_MOMENTUM, 1.0).double()
        alpha = torch.where(present, alpha, torch.zeros_like(alpha))[:, None]
        self.mean = (1 - alpha) * self.mean + alpha * batch_mean.cpu()
        self.second = (1 - alpha) * self.second + alpha * batch_second.cpu()
        self.count = self.count + batch_count

    @property
    def var(self) -> Tensor:
        return (self.second - self.mean * self.mean).clamp_min(0)


def balanced_global(class_mean: Tensor, class_var: Tensor, variance: str) -> tuple[Tensor, Tensor]:
    """Class-balanced global mean and variance (`mixture`), or mean within-class var (`paper`)."""
    mean = class_mean.mean(dim=0)
    if variance == "paper":
        return mean, class_var.mean(dim=0)
    return mean, (class_var + class_mean * class_mean).mean(dim=0) - mean * mean


class _StopForward(Exception):
    """Raised by a pre-hook to end a forward pass once the wanted BN input is captured."""


def _layer_moments(
    observer: nn.Module,
    layer: nn.BatchNorm2d,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    batch_size: int,
    order: Tensor,
    dynamic: bool,
) -> ClassMoments:
    """Per-class moments of one BN layer's input; each forward stops at that layer."""
    device = next(observer.parameters()).device
    moments = ClassMoments(num_classes, layer.num_features, dynamic)
    captured: list[Tensor] = []

    def grab(module: nn.Module, args: tuple) -> None:
        captured.append(args[0])
        raise _StopForward

    handle = layer.register_forward_pre_hook(grab)
    try:
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            captured.clear()
            try:
                observer(images[idx].to(device))
            except _StopForward:
                pass
            moments.update(captured[0], labels[idx].to(device))
    finally:
        handle.remove()
    return moments


def _write(layer: nn.BatchNorm2d, mean: Tensor, var: Tensor) -> None:
    layer.running_mean.copy_(mean.to(layer.running_mean))
    layer.running_var.copy_(var.to(layer.running_var))


@torch.no_grad()
def recalibrate(
    observer: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    batch_size: int = 500,
    mode: str = "fair",
    variance: str = "mixture",
    write_buffers: bool = True,
    order: Tensor | None = None,
    passes: str = "layerwise",
) -> BNTargets:
    """Inference pass(es) over (images, labels) → alignment targets; optionally write BN buffers.

    `order` (a permutation) only changes the batch order; with `mode="fair"` the result does not
    depend on it (exactly, up to float64 rounding). `passes` matters only when fair targets are
    written into the buffers (see the module docstring).
    """
    observer.eval()
    device = next(observer.parameters()).device
    layers = bn_layers(observer)
    order = torch.arange(len(images)) if order is None else order
    if mode == "fair" and write_buffers and passes == "layerwise":
        moments, global_mean, global_var = [], [], []
        for layer in layers:
            m = _layer_moments(
                observer, layer, images, labels, num_classes, batch_size, order, True
            )
            mu, var = balanced_global(m.mean, m.var, variance)
            _write(layer, mu.float(), var.float())
            moments.append(m)
            global_mean.append(mu.float())
            global_var.append(var.float())
        return BNTargets(
            global_mean,
            global_var,
            [m.mean.float() for m in moments],
            [m.var.float() for m in moments],
            moments[0].count.long(),
        )
    moments = [ClassMoments(num_classes, m.num_features, mode == "fair") for m in layers]
    with bn_inputs(observer) as captured:
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            captured.clear()
            observer(images[idx].to(device))
            y = labels[idx].to(device)
            for acc, a in zip(moments, captured, strict=True):
                acc.update(a, y)
    class_mean = [m.mean.float() for m in moments]
    class_var = [m.var.float() for m in moments]
    if mode == "fair":
        pairs = [balanced_global(m.mean, m.var, variance) for m in moments]
        global_mean = [p[0].float() for p in pairs]
        global_var = [p[1].float() for p in pairs]
        if write_buffers:
            for layer, mu, var in zip(layers, global_mean, global_var, strict=True):
                _write(layer, mu, var)
    else:
        global_mean = [layer.running_mean.detach().cpu().float().clone() for layer in layers]
        global_var = [layer.running_var.detach().cpu().float().clone() for layer in layers]
    return BNTargets(global_mean, global_var, class_mean, class_var, moments[0].count.long())
