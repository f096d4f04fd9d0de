"""`train_experts`: train (or finish) a store of experts, split over torchrun ranks if any."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ltdd.config import to_dict
from ltdd.data.dataset import LongTailedData
from ltdd.device import resolve_device
from ltdd.errors import UserError
from ltdd.experts.checkpoint import GroupCheckpoint
from ltdd.experts.config import ExpertsConfig, canonical_hash, hashed_config
from ltdd.experts.distributed import barrier, detect_ranks, process_group, rank_device
from ltdd.experts.store import (
    MANIFEST,
    TrajectoryStore,
    expert_filename,
    read_expert_meta,
    write_expert,
    write_manifest,
)
from ltdd.experts.trainer import Engine, expert_seed, train_group
from ltdd.io import read_json

log = logging.getLogger(__name__)


def data_fingerprint(data: LongTailedData) -> str:
    """sha256 of the canonical JSON of `data.info` (dataset, β, seed, index hashes, ...)."""
    return canonical_hash(data.info)


def groups_of(cfg: ExpertsConfig) -> list[list[int]]:
    """Expert indices cut into consecutive groups of `vectorize` (the same on every rank)."""
    n, k = cfg.num_experts, cfg.vectorize
    return [list(range(a, min(a + k, n))) for a in range(0, n, k)]


def _check_source(cfg: ExpertsConfig, source: TrajectoryStore | None, fingerprint: str) -> None:
    if not cfg.trains_classifier_only:
        if source is not None:
            raise UserError(
                f"kind={cfg.kind} trains from scratch; a source store is only for kind=classifier"
            )
        return
    if source is None:
        raise UserError(
            "kind=classifier needs the representation experts it starts from (a source store)"
        )
    if source.kind != "representation":
        raise UserError(
            f"{source.directory}: classifier experts start from representation experts, "
            f"this store holds {source.kind} experts"
        )
    if source.num_experts < cfg.num_experts:
        raise UserError(
            f"{source.directory}: has {source.num_experts} representation experts, "
            f"num_experts={cfg.num_experts} asks for more; lower num_experts or train more"
        )
    if source.manifest["data_fingerprint"] != fingerprint:
        raise UserError(
            f"{source.directory}: representation experts were trained on other data "
            "(dataset fingerprint differs); train them on this data first"
        )


def _check_existing(out_dir: Path, config_hash: str, num_experts: int) -> None:
    """Refuse an output directory that holds experts of another configuration."""
    stale = UserError(
        f"{out_dir}: holds experts of another configuration; "
        "use another output directory or delete this one"
    )
    manifest = out_dir / MANIFEST
    if manifest.is_file() and read_json(manifest).get("config_hash") != config_hash:
        raise stale
    for index in range(num_experts):
        path = out_dir / expert_filename(index)
        if path.is_file() and read_expert_meta(path).get("config_hash") != config_hash:
            raise stale


def train_experts(
    cfg: ExpertsConfig,
    data: LongTailedData,
    out_dir: Path,
    source: TrajectoryStore | None = None,
    progress: bool = True,
) -> TrajectoryStore:
    """Train `cfg.num_experts` experts into `out_dir` (resuming and skipping finished ones).

    Under torchrun the groups of `cfg.vectorize` experts are dealt out to the ranks; rank 0
    writes `manifest.json` once every rank is done. Classifier experts start from `source`.
    """
    cfg = cfg.resolved()
    out_dir = Path(out_dir)
    ranks = detect_ranks()
    device = rank_device(resolve_device(cfg.device), ranks)
    fingerprint = data_fingerprint(data)
    _check_source(cfg, source, fingerprint)
    source_hash = source.config_hash if source is not None else None
    config_hash = canonical_hash(
        {"config": hashed_config(cfg), "data": fingerprint, "source": source_hash}
    )
    _check_existing(out_dir, config_hash, cfg.num_experts)
    with process_group(ranks, device):
        engine = Engine(cfg, data.num_classes, tuple(data.image_shape), device)
        if source is not None and (
            source.layout.names != engine.layout.names
            or source.layout.shapes != engine.layout.shapes
        ):
            raise UserError(
                f"{source.directory}: its experts have another architecture than "
                f"model={cfg.model} with these width/depth/norm settings"
            )
        images = data.train_images.to(device)
        labels = data.train_labels.to(device)
        test_images = data.test_images.to(device)
        for experts in ranks.share(groups_of(cfg)):
            todo = [i for i in experts if not (out_dir / expert_filename(i)).is_file()]
            checkpoint = GroupCheckpoint(out_dir, experts, config_hash)
            if not todo:
                checkpoint.remove()
                continue
            seeds = [expert_seed(cfg.seed, i) for i in experts]

            def fresh(experts=experts, seeds=seeds):
                if source is not None:
                    init = torch.stack([source.final(i) for i in experts]).to(device)
                else:
                    init = torch.stack([engine.init_params(s) for s in seeds])
                return engine.fresh_state(init, seeds, labels)

            final = train_group(
                engine, checkpoint, fresh, images, labels, progress and ranks.is_main
            )
            for k, index in enumerate(experts):
                if index not in todo:
                    continue
                metrics = engine.evaluate(
                    final[k], test_images, data.test_labels, data.train_counts
                )
                meta = {
                    "kind": cfg.kind,
                    "index": index,
                    "seed": seeds[k],
                    "config_hash": config_hash,
                    "epochs": cfg.save_epochs,
                    "metrics": metrics,
                }
                snapshots = checkpoint.snapshots(k, cfg.save_epochs)
                write_expert(
                    out_dir / expert_filename(index),
                    snapshots,
                    final[k],
                    cfg.epochs,
                    cfg.dtype,
                    meta,
                )
                log.info("expert %d: balanced test accuracy %.4f", index, metrics["accuracy"])
            checkpoint.remove()
        barrier(ranks)
        if ranks.is_main:
            header = {
                "kind": cfg.kind,
                "config": to_dict(cfg),
                "config_hash": config_hash,
                "data_fingerprint": fingerprint,
                "dataset": data.info.get("dataset"),
                "train_counts": list(data.train_counts),
                "source": None
                if source is None
                else {"directory": str(source.directory), "config_hash": source_hash},
                "layout": {
                    "names": engine.layout.names,
                    "shapes": [list(s) for s in engine.layout.shapes],
                },
                "num_params": engine.layout.num_params,
                "classifier_start": engine.layout.classifier_start,
                "epochs": cfg.save_epochs,
                "num_epochs": cfg.epochs,
                "dtype": cfg.dtype,
            }
            write_manifest(out_dir, header, cfg.num_experts)
        barrier(ranks)
    return TrajectoryStore(out_dir)
