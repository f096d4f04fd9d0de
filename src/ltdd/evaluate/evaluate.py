"""Evaluate a small training set over several seeds on the balanced and long-tailed test sets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from ltdd.config import to_dict
from ltdd.data.dataset import LongTailedData
from ltdd.evaluate.metrics import GROUPS, classification_report
from ltdd.evaluate.seedcache import SeedCache
from ltdd.evaluate.trainer import TrainConfig, predict, train_network

log = logging.getLogger(__name__)

PROFILES = {
    "balanced": ("balanced",),
    "long-tailed": ("long-tailed",),
    "both": ("balanced", "long-tailed"),
}


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol: the network recipe, how many seeds, which test profiles."""

    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: int = field(default=3, metadata={"ge": 1})
    first_seed: int = field(default=0, metadata={"ge": 0})
    test_profile: str = field(default="both", metadata={"choices": tuple(PROFILES)})


def summarize(values: list[float]) -> dict:
    """mean, population std (ddof 0, as the reference reports) and the individual runs."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "runs": [float(v) for v in array],
    }


def aggregate(reports: list[dict]) -> dict:
    """Combine per-seed classification reports into mean ± std summaries."""
    per_class = np.array(
        [[np.nan if a is None else a for a in r["per_class_accuracy"]] for r in reports]
    )
    out = {
        key: summarize([r[key] for r in reports])
        for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1")
    }
    present = ~np.isnan(per_class[0])
    out["per_class_accuracy"] = [
        float(m) if ok else None for m, ok in zip(per_class.mean(axis=0), present, strict=True)
    ]
    out["per_class_accuracy_std"] = [
        float(s) if ok else None for s, ok in zip(per_class.std(axis=0), present, strict=True)
    ]
    groups = {}
    for name in GROUPS:
        first = reports[0]["groups"][name]
        groups[name] = (
            None
            if first is None
            else {
                "classes": first["classes"],
                "accuracy": summarize([r["groups"][name]["accuracy"] for r in reports]),
            }
        )
    out["groups"] = groups
    return out


def add_reports(
    reports: dict[str, list[dict]], model: torch.nn.Module, data: LongTailedData
) -> None:
    """Append `model`'s classification report on each test profile (the keys of `reports`)."""
    for profile, profile_reports in reports.items():
        test_x, test_y = data.test_set(profile)
        profile_reports.append(
            classification_report(
                test_y.numpy(), predict(model, test_x), data.num_classes, data.train_counts
            )
        )


def _seed_reports(
    images: torch.Tensor,
    labels: torch.Tensor,
    lr: float,
    data: LongTailedData,
    cfg: EvalConfig,
    seed: int,
    device: torch.device,
    progress: bool,
    cache: SeedCache | None,
) -> tuple[bool, dict[str, dict]]:
    """(weights finite, {profile: report}) of the network of `seed`, trained unless cached."""
    profiles = PROFILES[cfg.test_profile]
    key = None
    if cache is not None:
        if cache.data is not data:
            raise ValueError("the seed cache belongs to another data set")
        key = cache.key(images, labels, lr, cfg.train, seed, device)
        hit = cache.get(key, profiles)
        if hit is not None:
            return hit
    model = train_network(
        images, labels, lr, data.num_classes, cfg.train, seed, device, progress=progress
    )
    finite = all(torch.isfinite(t).all() for t in (*model.parameters(), *model.buffers()))
    reports: dict[str, list[dict]] = {p: [] for p in profiles}
    add_reports(reports, model, data)
    out = {p: r[0] for p, r in reports.items()}
    if cache is not None and key is not None:
        cache.put(key, bool(finite), out)
    return bool(finite), out


def evaluate_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    lr: float,
    data: LongTailedData,
    cfg: EvalConfig,
    device: torch.device,
    progress: bool = False,
    cache: SeedCache | None = None,
) -> dict:
    """Train `cfg.seeds` fresh networks on the set and report metrics per test profile.

    With `cache`, a network already trained from the same inputs (`SeedCache.key`) is not
    trained again: its stored reports are used."""
    profiles = PROFILES[cfg.test_profile]
    reports: dict[str, list[dict]] = {p: [] for p in profiles}
    diverged = []
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        finite, seed_reports = _seed_reports(
            images, labels, lr, data, cfg, seed, device, progress, cache
        )
        if not finite:
            diverged.append(seed)
        for profile, report in seed_reports.items():
            reports[profile].append(report)
    result = {p.replace("-", "_"): aggregate(r) for p, r in reports.items()}
    if diverged:
        warning = (
            f"training diverged (NaN/inf weights) for seed(s) {diverged} at lr {lr:g}: their "
            "accuracy is that of a broken network, not of the set; use a smaller learning rate"
        )
        log.warning("warning: %s", warning)
        result["warnings"] = [warning]
        result["diverged_seeds"] = diverged
    result["settings"] = {
        **to_dict(cfg),
        "lr": float(lr),
        "num_images": len(images),
        "label_kind": "hard" if labels.dtype == torch.int64 else "soft",
        "std": "population standard deviation over seeds (ddof 0)",
    }
    return result
