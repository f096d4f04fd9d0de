"""UL-LT end to end (spec §1.1): experts → recalibration → initialisation → recovery → labels.

`synthesize` returns a soft-label `DistilledSet` (teacher logits, optionally ADSA-shifted, in
`labels`; the class of each image in `classes`) and the wall time / peak memory of each stage.
The experts live in `experts_root/<config hash>/` and are reused across IPC and ablations.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ltdd.config import to_dict
from ltdd.data.dataset import LongTailedData
from ltdd.distilled import DistilledSet
from ltdd.pipeline.resources import measure
from ltdd.select import select_random
from ltdd.unilevel.adsa import calibrate
from ltdd.unilevel.config import RecoverConfig, UnilevelConfig
from ltdd.unilevel.experts import ensure_experts, load_expert, store_hash
from ltdd.unilevel.init import candidate_pool, confidence_init, herding_init
from ltdd.unilevel.recalibrate import recalibrate
from ltdd.unilevel.recover import pixel_bounds, recover
from ltdd.unilevel.relabel import mix_hard, teacher_logits


def experts_folder(cfg: UnilevelConfig, data: LongTailedData, root: Path) -> Path:
    """Where the experts of this expert config and data live (one folder per config hash)."""
    return Path(root) / store_hash(cfg.experts, data)[:12]


def statistics_subset(cfg: UnilevelConfig, data: LongTailedData) -> tuple:
    """The real images recalibration reads: all, or a seeded subset of at most
    `recalibration.max_images_per_class` per class (exact pooled statistics of that subset)."""
    limit = cfg.recalibration.max_images_per_class
    if not limit:
        return data.train_images, data.train_labels
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    pool = candidate_pool(data.train_labels.numpy(), data.num_classes, limit, gen)
    idx = pool[pool >= 0]
    return data.train_images[idx], data.train_labels[idx]


def _confidence(cfg: UnilevelConfig, observer, teacher, data: LongTailedData, ipc: int):
    return confidence_init(
        teacher,
        data.train_images,
        data.train_labels,
        data.num_classes,
        ipc,
        cfg.init.crops_per_image,
        cfg.init.crop_scale,
        cfg.init.max_images_per_class,
        cfg.seed,
    )


def _herding(cfg: UnilevelConfig, observer, teacher, data: LongTailedData, ipc: int):
    return herding_init(
        observer,
        data.train_images,
        data.train_labels,
        data.num_classes,
        ipc,
        cfg.init.max_images_per_class,
        cfg.seed,
    )


def _random(cfg: UnilevelConfig, observer, teacher, data: LongTailedData, ipc: int):
    idx = torch.as_tensor(
        select_random(data.train_labels.numpy(), data.num_classes, ipc, cfg.seed, "duplicate")
    )
    return (
        data.train_images[idx].clone(),
        data.train_labels[idx].clone(),
        {"source_indices": idx.tolist()},
    )


INIT_MODES = {"confidence": _confidence, "herding": _herding, "random": _random}
"""`init.mode` → (cfg, observer, teacher, data, ipc) → (images, classes, info)."""


def initial_set(
    cfg: UnilevelConfig, teacher, data: LongTailedData, ipc: int, observer=None
) -> tuple:
    """(images, classes, info) of `cfg.init.mode` (see INIT_MODES); info["mode"] names it.
    Herding embeds with `observer`, which defaults to the teacher (one shared network)."""
    images, classes, info = INIT_MODES[cfg.init.mode](
        cfg, teacher if observer is None else observer, teacher, data, ipc
    )
    return images, classes, {"mode": cfg.init.mode, **info}


def label_set(
    cfg: UnilevelConfig, teacher, images: torch.Tensor, classes: torch.Tensor, counts: list[int]
) -> tuple[torch.Tensor, dict]:
    """Static soft labels: teacher logits / temperature, then ADSA's τ*·log π shift if enabled,
    then the hard-label share κ = `relabel.hard_weight` (see `mix_hard`)."""
    logits = teacher_logits(teacher, images) / cfg.relabel.temperature
    info = {"adsa": cfg.relabel.adsa, "adsa_tau": 0.0, "temperature": cfg.relabel.temperature}
    if cfg.relabel.adsa:
        logits, tau = calibrate(
            logits,
            classes,
            counts,
            tau_min=cfg.relabel.tau_min,
            tau_max=cfg.relabel.tau_max,
            step=cfg.relabel.tau_step,
        )
        info["adsa_tau"] = tau
    logits = mix_hard(logits, classes, cfg.relabel.hard_weight)
    info["hard_weight"] = cfg.relabel.hard_weight
    return logits, info


def synthesize(
    cfg: UnilevelConfig,
    data: LongTailedData,
    ipc: int,
    experts_root: Path,
    device: torch.device,
    meta: dict,
    progress: bool = False,
) -> tuple[DistilledSet, dict]:
    """Run every UL-LT stage; returns the set and {stage: wall_s, cpu_s, peak_rss_mb, ...}."""
    timings: dict[str, dict] = {}
    folder = experts_folder(cfg, data, experts_root)
    with measure(device) as timings["experts"]:
        ensure_experts(cfg.experts, data, folder, device, progress)
    observer = load_expert(folder, "observer", data, device)
    teacher = load_expert(folder, "teacher", data, device)
    with measure(device) as timings["recalibration"]:
        targets = None  # only recovery reads the targets: skipped when it is off
        if cfg.recover.iterations:
            rc = cfg.recalibration
            stats_images, stats_labels = statistics_subset(cfg, data)
            targets = recalibrate(
                observer,
                stats_images,
                stats_labels,
                data.num_classes,
                rc.batch_size,
                rc.mode,
                rc.variance,
                rc.write_buffers,
                passes=rc.passes,
            )
    with measure(device) as timings["initialisation"]:
        images, classes, init_info = initial_set(cfg, teacher, data, ipc, observer)
    with measure(device) as timings["recovery"]:
        images, history = recover(
            observer,
            images,
            classes,
            targets,
            data.num_classes,
            cfg.recover,
            pixel_bounds(data.train_images),
            cfg.seed,
            progress,
        )
    with measure(device) as timings["relabel"]:
        labels, label_info = label_set(cfg, teacher, images, classes, data.train_counts)
    details = {
        "config": to_dict(cfg),
        "teacher_store": str(folder),
        "init": {k: v for k, v in init_info.items() if k != "source_indices"},
        "source_indices": init_info.get("source_indices"),
        "recovery_loss": [history[0], history[-1]] if history else None,
        "relabel": label_info,
        "timings": timings,
    }
    distilled = DistilledSet(
        images,
        labels,
        cfg.relabel.set_lr,
        {**meta, "unilevel": details},
        classes,
    )
    return distilled, timings


def without(cfg: UnilevelConfig, component: str) -> UnilevelConfig:
    """One ablation's config: debiasing, recalibration, initialisation, recovery, adsa or
    layerwise. `recovery`, `adsa` and `layerwise` toggle: a profile with recovery off gets the
    spec's default recovery (`RecoverConfig().iterations`), one with single-pass
    recalibration gets layer-wise passes."""
    replace = dataclasses.replace

    def recovery(c: UnilevelConfig) -> UnilevelConfig:
        its = 0 if c.recover.iterations else RecoverConfig().iterations
        return replace(c, recover=replace(c.recover, iterations=its))

    def layerwise(c: UnilevelConfig) -> UnilevelConfig:
        passes = "single" if c.recalibration.passes == "layerwise" else "layerwise"
        return replace(c, recalibration=replace(c.recalibration, passes=passes))

    changes = {
        "debiasing": lambda c: replace(c, experts=replace(c.experts, debias=False)),
        "recalibration": lambda c: replace(c, recalibration=replace(c.recalibration, mode="ema")),
        "initialisation": lambda c: replace(c, init=replace(c.init, mode="random")),
        "recovery": recovery,
        "adsa": lambda c: replace(c, relabel=replace(c.relabel, adsa=not c.relabel.adsa)),
        "layerwise": layerwise,
    }
    return changes[component](cfg)
