"""UL-LT's evaluation protocol, EDC style (spec §1.7), reporting last-epoch EMA accuracy only.

A fresh student trains on the set with κ2·MSE(student logits, label logits) (mean over batch and
classes) + κ1·CE(student logits, hard class), AdamW, cosine schedule, per-sample random-resized
crop + flip and CutMix; labels are the stored logits (`static`, mixed with the CutMix λ) or the
teacher's logits on the augmented, mixed batch (`online`, FKD style). The EMA of the weights is
tested once, after the last epoch: never the best test epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ltdd.config import to_dict
from ltdd.data.dataset import LongTailedData
from ltdd.evaluate.evaluate import PROFILES, add_reports, aggregate
from ltdd.models import create_model
from ltdd.unilevel.config import EDCEvalConfig
from ltdd.unilevel.crops import random_resized_crop
from ltdd.unilevel.mixing import cutmix, cutmix_box, sample_lambda


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
            pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for be, b in zip(ema.buffers(), model.buffers(), strict=True):
            be.copy_(b)


def train_edc(
    images: Tensor,
    classes: Tensor,
    labels: Tensor | None,
    teacher: Callable[[Tensor], Tensor] | None,
    num_classes: int,
    cfg: EDCEvalConfig,
    seed: int,
    device: torch.device,
    progress: bool = False,
) -> nn.Module:
    """Train a student on the set; `teacher` given = online labels, else the static `labels`."""
    if (teacher is None) == (labels is None):
        raise ValueError("give exactly one of static labels or an online teacher")
    model = create_model(
        cfg.model, num_classes, tuple(images.shape[1:]), seed=seed, width=cfg.width
    )
    model = model.to(device)
    ema = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed + 1)
    images, classes = images.to(device), classes.to(device)
    labels = labels.to(device) if labels is not None else None
    model.train()
    for epoch in tqdm(
        range(cfg.epochs), desc="edc", leave=False, disable=None if progress else True
    ):
        opt.param_groups[0]["lr"] = 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs))
        order = torch.randperm(len(images), generator=gen).to(device)
        for start in range(0, len(images), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            x = random_resized_crop(images[idx], cfg.crop_scale, gen, flip=True)
            y = classes[idx]
            target = labels[idx] if labels is not None else None
            if cfg.cutmix and len(idx) > 1:
                lam = sample_lambda(gen)
                perm = torch.randperm(len(idx), generator=gen).to(device)
                box = cutmix_box(x.shape[2], x.shape[3], lam, gen)
                x = cutmix(x, x[perm], box)
                if target is not None:
                    top, bottom, left, right = box
                    area = (bottom - top) * (right - left) / (x.shape[2] * x.shape[3])
                    target = (1 - area) * target + area * target[perm]
            if teacher is not None:
                target = teacher(x)
            out = model(x)
            loss = cfg.mse_weight * F.mse_loss(out, target) + cfg.ce_weight * F.cross_entropy(
                out, y
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _ema_update(ema, model, cfg.ema_decay)
    return ema.eval()


def evaluate_edc(
    images: Tensor,
    classes: Tensor,
    data: LongTailedData,
    cfg: EDCEvalConfig,
    device: torch.device,
    labels: Tensor | None = None,
    teacher: Callable[[Tensor], Tensor] | None = None,
    test_profile: str = "both",
    progress: bool = False,
    extra: dict | None = None,
) -> dict:
    """Train `cfg.seeds` students (EDC protocol); metrics per test profile, as evaluate_set."""
    profiles = PROFILES[test_profile]
    reports: dict[str, list[dict]] = {p: [] for p in profiles}
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        model = train_edc(
            images, classes, labels, teacher, data.num_classes, cfg, seed, device, progress
        )
        add_reports(reports, model, data)
    result = {p.replace("-", "_"): aggregate(r) for p, r in reports.items()}
    result["settings"] = {
        **to_dict(cfg),
        "protocol": "edc",
        "labels": "online" if teacher is not None else "static",
        "reported": "last-epoch EMA weights",
        "num_images": len(images),
        "std": "population standard deviation over seeds (ddof 0)",
        **(extra or {}),
    }
    return result
