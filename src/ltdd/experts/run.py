"""`train_experts`: train (or finish) a store of experts, split over torchrun ranks if any."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
from ltdd.experts.verify import data_summary
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


def _check_layout(source: TrajectoryStore | None, engine: Engine) -> None:
    layout = engine.layout
    if source is not None and (source.layout.names, source.layout.shapes) != (
        layout.names,
        layout.shapes,
    ):
        raise UserError(
            f"{source.directory}: its experts have another architecture than "
            f"model={engine.cfg.model} with these width/depth/norm settings"
        )


@dataclass(frozen=True)
class _Job:
    """What every group of one `train_experts` call shares."""

    engine: Engine
    data: LongTailedData
    out_dir: Path
    config_hash: str
    source: TrajectoryStore | None
    progress: bool

    def initial_params(self, experts: list[int], seeds: list[int]) -> torch.Tensor:
        """(K, P): the source's final weights (classifier experts) or a fresh initialisation."""
        if self.source is not None:
            return torch.stack([self.source.final(i) for i in experts]).to(self.engine.device)
        return torch.stack([self.engine.init_params(s) for s in seeds])

    def run_group(self, experts: list[int]) -> None:
        """Train one group (resuming) and write the expert files that do not exist yet."""
        engine, cfg, data = self.engine, self.engine.cfg, self.data
        device = engine.device
        todo = [i for i in experts if not (self.out_dir / expert_filename(i)).is_file()]
        checkpoint = GroupCheckpoint(self.out_dir, experts, self.config_hash)
        if todo:
            seeds = [expert_seed(cfg.seed, i) for i in experts]
            labels = data.train_labels.to(device)
            final = train_group(
                engine,
                checkpoint,
                lambda: engine.fresh_state(self.initial_params(experts, seeds), seeds, labels),
                data.train_images.to(device),
                labels,
                self.progress,
            )
            test_images = data.test_images.to(device)
            for k, index in enumerate(experts):
                if index in todo:
                    metrics = engine.evaluate(
                        final[k], test_images, data.test_labels, data.train_counts
                    )
                    meta = {
                        "kind": cfg.kind,
                        "index": index,
                        "seed": seeds[k],
                        "config_hash": self.config_hash,
                        "epochs": cfg.save_epochs,
                        "metrics": metrics,
                    }
                    snapshots = checkpoint.snapshots(k, cfg.save_epochs)
                    path = self.out_dir / expert_filename(index)
                    write_expert(path, snapshots, final[k], cfg.epochs, cfg.dtype, meta)
                    log.info("expert %d: balanced test accuracy %.4f", index, metrics["accuracy"])
        checkpoint.remove()

    def manifest_header(self, fingerprint: str) -> dict:
        cfg, layout, source = self.engine.cfg, self.engine.layout, self.source
        return {
            "kind": cfg.kind,
            "config": to_dict(cfg),
            "config_hash": self.config_hash,
            "data_fingerprint": fingerprint,
            "data": data_summary(self.data.info),
            "dataset": self.data.info.get("dataset"),
            "train_counts": list(self.data.train_counts),
            "source": None
            if source is None
            else {"directory": str(source.directory), "config_hash": source.config_hash},
            "layout": {"names": layout.names, "shapes": [list(s) for s in layout.shapes]},
            "num_params": layout.num_params,
            "classifier_start": layout.classifier_start,
            "epochs": cfg.save_epochs,
            "num_epochs": cfg.epochs,
            "dtype": cfg.dtype,
        }


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
    config_hash = canonical_hash(
        {
            "config": hashed_config(cfg),
            "data": fingerprint,
            "source": source.config_hash if source is not None else None,
        }
    )
    _check_existing(out_dir, config_hash, cfg.num_experts)
    with process_group(ranks, device):
        engine = Engine(cfg, data.num_classes, tuple(data.image_shape), device)
        _check_layout(source, engine)
        job = _Job(engine, data, out_dir, config_hash, source, progress and ranks.is_main)
        for experts in ranks.share(groups_of(cfg)):
            job.run_group(experts)
        barrier(ranks)
        if ranks.is_main:
            write_manifest(out_dir, job.manifest_header(fingerprint), cfg.num_experts)
        barrier(ranks)
    return TrajectoryStore(out_dir)
