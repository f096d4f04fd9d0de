"""What each `ltdd` subcommand does, as plain functions of parsed arguments."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ltdd.config import from_dict, load_config, to_dict
from ltdd.data.dataset import DataConfig, LongTailedData, describe, prepare_data
from ltdd.device import resolve_device
from ltdd.distill.config import DistillConfig
from ltdd.distill.engine import distill
from ltdd.distill.methods import METHODS
from ltdd.distilled import DistilledSet, check_lr, set_metadata
from ltdd.errors import UserError
from ltdd.evaluate.evaluate import EvalConfig, evaluate_set
from ltdd.evaluate.trainer import TrainConfig
from ltdd.experts import ExpertsConfig, estimate, summary_table, train_experts
from ltdd.experts.verify import open_store
from ltdd.export import export_set
from ltdd.io import check_writable, write_json
from ltdd.lock import locked
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import run_pipeline
from ltdd.report.build import build_report, summary_markdown
from ltdd.report.grid import save_class_grid
from ltdd.select import select_random
from ltdd.tracking import tracking

log = logging.getLogger("ltdd")


def _data_config(args: argparse.Namespace, **extra) -> DataConfig:
    values = {
        "dataset": args.dataset,
        "root": args.root,
        "imbalance_factor": args.imbalance_factor,
        "seed": args.seed,
        **extra,
    }
    return from_dict(DataConfig, {k: v for k, v in values.items() if v is not None})


def data(args: argparse.Namespace) -> None:
    check_writable(args.json)
    summary = describe(_data_config(args, test_profile=args.test_profile))
    write_json(args.json, summary)
    log.info(
        "%s beta=%g: train %s, test %s -> %s",
        summary["dataset"],
        args.imbalance_factor,
        summary["train_counts"],
        summary["test_counts"],
        args.json,
    )


def baseline(args: argparse.Namespace) -> None:
    if args.ipc <= 0:
        raise UserError(f"--ipc must be a positive number of images per class, got {args.ipc}")
    check_lr(args.lr)
    check_writable(args.out)
    cfg = _data_config(args)
    data = prepare_data(cfg)
    if args.kind == "random":
        idx = torch.as_tensor(
            select_random(
                data.train_labels.numpy(), data.num_classes, args.ipc, args.seed, args.tail_policy
            )
        )
        extra = {"tail_policy": args.tail_policy, "selection_seed": args.seed}
        ipc = args.ipc
    else:
        idx = torch.arange(len(data.train_labels))
        extra, ipc = {}, max(data.train_counts)
    meta = set_metadata(data, cfg, f"{args.kind}", ipc, **extra)
    DistilledSet(data.train_images[idx], data.train_labels[idx], args.lr, meta).save(args.out)
    log.info("wrote %d images (%s baseline) -> %s", len(idx), args.kind, args.out)


def load_set_and_data(path: Path, root: Path | None) -> tuple[DistilledSet, LongTailedData]:
    """Read a distilled set and rebuild the data (and preprocessing) it was made from."""
    distilled = DistilledSet.load(path)
    values = dict(distilled.meta["data"])
    if root is not None:
        values["root"] = str(root)
    try:
        cfg = from_dict(DataConfig, values)
    except UserError as exc:
        raise UserError(f"{path}: its metadata names no usable dataset ({exc})") from None
    data = prepare_data(cfg)
    distilled.check_fits(data.num_classes, data.image_shape, path)
    expected = distilled.meta.get("index_sha256")
    if expected and expected != data.info["index_sha256"]:
        raise UserError(
            f"{path}: the dataset at hand selects different images than the one the "
            "set was made from (index_sha256 differs); check --root and the dataset"
        )
    return distilled, data


def eval_train_config(
    meta: dict, arch: str | None, width: int | None, epochs: int, batch_size: int | None
) -> TrainConfig:
    """The evaluation network: the one the set was made for (its `model` metadata), unless
    `arch` names another (then with that family's defaults, and `width` if given)."""
    made_for = meta.get("model", {})
    train = from_dict(
        TrainConfig,
        {
            "model": arch or made_for.get("name", "convnet"),
            "width": width if width is not None or arch else made_for.get("width"),
            "depth": None if arch else made_for.get("depth"),
            "norm": None if arch else made_for.get("norm"),
            "epochs": epochs,
        },
    )
    if batch_size is not None:
        train = dataclasses.replace(train, batch_size=batch_size)
    return train


def evaluate(args: argparse.Namespace) -> None:
    for name in ("epochs", "seeds", "width", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "epochs" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.lr is not None:
        check_lr(args.lr)
    check_writable(args.json)
    device = resolve_device(args.device)
    distilled, data = load_set_and_data(args.file, args.root)
    train = eval_train_config(distilled.meta, args.arch, args.width, args.epochs, args.batch_size)
    cfg = EvalConfig(
        train=train, seeds=args.seeds, first_seed=args.first_seed, test_profile=args.test_profile
    )
    lr = args.lr if args.lr is not None else distilled.lr
    result = evaluate_set(distilled.images, distilled.labels, lr, data, cfg, device, progress=True)
    result["file"] = str(args.file)
    result["set"] = {
        k: distilled.meta.get(k)
        for k in ("dataset", "imbalance_factor", "ipc", "method", "label_kind")
    }
    write_json(args.json, result)
    for profile in ("balanced", "long_tailed"):
        if profile in result:
            acc = result[profile]["accuracy"]
            log.info(
                "%s test accuracy: %.2f ± %.2f %% (%d seeds)",
                profile,
                100 * acc["mean"],
                100 * acc["std"],
                args.seeds,
            )
    log.info("-> %s", args.json)


def show(args: argparse.Namespace) -> None:
    if args.max_per_class <= 0:
        raise UserError(f"--max-per-class must be positive, got {args.max_per_class}")
    check_writable(args.out)
    distilled, data = load_set_and_data(args.file, args.root)
    pictures = data.preprocessing.inverse_transform(distilled.images)
    classes = distilled.class_ids
    meta = distilled.meta
    title = f"{meta['method']} · {meta['dataset']} β={meta['imbalance_factor']:g}"
    save_class_grid(pictures, classes, data.class_names, args.out, args.max_per_class, title)
    log.info("-> %s", args.out)


@dataclass(frozen=True)
class ExpertsCommandConfig:
    """The YAML of `ltdd experts`: sections `data` and `experts`."""

    data: DataConfig = field(default_factory=DataConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)


@dataclass(frozen=True)
class DistillCommandConfig:
    """The YAML of `ltdd distill`: sections `data` and `distill`."""

    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


def experts(args: argparse.Namespace) -> None:
    cfg = load_config(ExpertsCommandConfig, args.config, args.overrides)
    section = dataclasses.replace(cfg.experts, device=args.device)
    if args.dry_run:
        plan = estimate(section, describe(cfg.data))
        for key, value in plan.items():
            print(f"{key:>22}: {_human(key, value)}")
        return
    check_writable(args.out, folder=True)
    # Under torchrun every rank writes into --out: rank 0 holds the lock for the whole job.
    with locked(args.out, "expert store") if _rank() == 0 else contextlib.nullcontext():
        data = prepare_data(cfg.data)
        source = open_store(args.source, data.info) if args.source is not None else None
        store = train_experts(section, data, args.out, source=source)
    if _rank() == 0:  # under torchrun, one summary
        print(summary_table(store))
        log.info("-> %s", args.out)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _human(key: str, value) -> str:
    if isinstance(value, (int, float)) and key.endswith("bytes"):
        return f"{value / 2**20:,.1f} MiB"
    if isinstance(value, float) and key.endswith("seconds"):
        return f"{value:,.0f} s ({value / 3600:.2f} h)"
    return str(value)


def distill_cmd(args: argparse.Namespace) -> None:
    cfg = load_config(DistillCommandConfig, args.config, args.overrides)
    check_writable(args.out, folder=True)
    with locked(args.out, "distillation folder"):
        path = _distill_locked(cfg, args)
    log.info("-> %s", path)


def _distill_locked(cfg: DistillCommandConfig, args: argparse.Namespace) -> Path:
    device = resolve_device(args.device)
    data = prepare_data(cfg.data)
    kinds = METHODS.get(cfg.distill.method)().expert_kinds
    stores = {}
    for kind in kinds:
        folder = args.experts / (
            args.share_experts if args.share_experts and kind in ("mtt", "datm") else kind
        )
        if not (folder / "manifest.json").is_file():
            raise UserError(
                f"{folder}: no expert store (manifest.json) for the {kind} experts "
                f"{cfg.distill.method} needs; train them with `ltdd experts`"
            )
        stores[kind] = open_store(folder, data.info)
    meta = set_metadata(data, cfg.data, cfg.distill.method, cfg.distill.ipc)
    with tracking(
        args.tracker, args.out / "tracking", image_every=args.tracker_images, config=to_dict(cfg)
    ):
        return distill(cfg.distill, data, stores, args.out, device=device, meta=meta)


def run(args: argparse.Namespace) -> None:
    jobs = [] if args.jobs is None else [f"jobs={args.jobs}"]
    cfg = load_config(RunConfig, args.config, [*args.overrides, *jobs])
    if args.device != "auto":
        cfg = dataclasses.replace(cfg, device=args.device)
    check_writable(cfg.run_dir, folder=True)
    with tracking(
        args.tracker, cfg.run_dir / "tracking", image_every=args.tracker_images, config=to_dict(cfg)
    ):
        report = run_pipeline(cfg)
    print(summary_markdown(report.parent.parent))
    print(f"report: {report}")


def export(args: argparse.Namespace) -> None:
    out = export_set(args.file, args.out, args.format, args.root)
    log.info("-> %s (%s)", out, args.format)


def report(args: argparse.Namespace) -> None:
    check_writable(args.out or args.run_dirs[0] / "report", folder=True)
    path = build_report(args.run_dirs, args.out)
    print(f"report: {path}")
