"""Recovery (spec §1.5): optimise synthetic pixels so the frozen observer's BN statistics match.

Loss per batch S̃ (whole classes, class-balanced) on the inputs a_l of every BN layer l:
  ω_g Σ_l w_l [‖μ_l(S̃) − μ_l(D)‖ + ‖σ²_l(S̃) − σ²_l(D)‖]
+ ω_c Σ_c Σ_l w_l [‖μ_l(S̃_c) − μ^c_l(D)‖ + ‖σ²_l(S̃_c) − σ²^c_l(D)‖]   (+ ω_ce CE(θR(S̃), y))
with w_1 = `first_layer_weight`, others 1; per-class terms vectorised with a one-hot average.
Adam (0.5, 0.9), cosine learning rate, one shared random-resized crop + flip per iteration,
pixels clipped to the real data's range after every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ltdd.unilevel.bnstats import batch_stats, class_stats
from ltdd.unilevel.config import RecoverConfig
from ltdd.unilevel.crops import random_resized_crop
from ltdd.unilevel.recalibrate import BNTargets


def alignment_loss(
    captured: list[Tensor],
    labels: Tensor,
    targets: BNTargets | None,
    num_classes: int,
    cfg: RecoverConfig,
) -> Tensor:
    """The global + class-wise BN-statistic alignment loss of one forward's BN inputs."""
    total = captured[0].new_zeros(())
    present = torch.bincount(labels, minlength=num_classes) > 0
    for layer, a in enumerate(captured):
        w = cfg.first_layer_weight if layer == 0 else 1.0
        if cfg.global_weight:
            mean, var = batch_stats(a)
            total = total + cfg.global_weight * w * (
                torch.linalg.vector_norm(mean - targets.global_mean[layer])
                + torch.linalg.vector_norm(var - targets.global_var[layer])
            )
        if cfg.class_weight:
            cmean, cvar, _ = class_stats(a, labels, num_classes)
            dm = torch.linalg.vector_norm(cmean - targets.class_mean[layer], dim=1)
            dv = torch.linalg.vector_norm(cvar - targets.class_var[layer], dim=1)
            total = total + cfg.class_weight * w * ((dm + dv) * present).sum()
    return total


def recover(
    observer: nn.Module,
    images: Tensor,
    classes: Tensor,
    targets: BNTargets | None,
    num_classes: int,
    cfg: RecoverConfig,
    bounds: tuple[float, float],
    seed: int,
    progress: bool = False,
) -> tuple[Tensor, list[float]]:
    """Return the recovered images (same order as `images`) and the per-iteration mean loss.

    Images are processed in class-balanced batches of `batch_ipc` images per class; each batch
    runs `cfg.iterations` steps (cost grows with IPC, memory does not).
    """
    from ltdd.unilevel.bnstats import bn_inputs

    device = next(observer.parameters()).device
    observer.eval()
    for p in observer.parameters():
        p.requires_grad_(False)
    out = images.clone()
    if cfg.iterations == 0:
        return out, []
    targets = targets.to(device)
    gen = torch.Generator().manual_seed(seed)
    rank = _rank_within_class(classes, num_classes)
    ipc = int(rank.max()) + 1
    history = torch.zeros(cfg.iterations)
    chunks = range(0, ipc, cfg.batch_ipc)
    with bn_inputs(observer) as captured:
        for first in chunks:
            sel = torch.nonzero((rank >= first) & (rank < first + cfg.batch_ipc)).squeeze(1)
            x = images[sel].clone().to(device).requires_grad_(True)
            y = classes[sel].to(device)
            opt = torch.optim.Adam([x], lr=cfg.lr, betas=(0.5, 0.9), eps=1e-8)
            for it in tqdm(
                range(cfg.iterations),
                desc="recover",
                leave=False,
                disable=None if progress else True,
            ):
                opt.param_groups[0]["lr"] = (
                    0.5 * cfg.lr * (1 + math.cos(math.pi * it / cfg.iterations))
                )
                view = random_resized_crop(x, cfg.crop_scale, gen, flip=cfg.flip, shared=True)
                captured.clear()
                logits = observer(view)
                loss = alignment_loss(captured, y, targets, num_classes, cfg)
                if cfg.ce_weight:
                    loss = loss + cfg.ce_weight * F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(*bounds)
                history[it] += float(loss.detach()) / len(chunks)
            out[sel] = x.detach().cpu()
    return out, history.tolist()


def _rank_within_class(classes: Tensor, num_classes: int) -> Tensor:
    """For each image, how many earlier images share its class (0, 1, ... per class)."""
    rank = torch.zeros_like(classes)
    for c in range(num_classes):
        members = torch.nonzero(classes == c).squeeze(1)
        rank[members] = torch.arange(len(members))
    return rank


def pixel_bounds(images: Tensor) -> tuple[float, float]:
    """The range of the real images in model-input space (the clip box of recovery)."""
    return float(images.min()), float(images.max())
