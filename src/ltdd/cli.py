"""The `ltdd` command: thin argument parsing around the library's stage functions."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from ltdd import commands
from ltdd.allocator import keep_freed_memory
from ltdd.errors import UserError
from ltdd.evaluate.evaluate import PROFILES
from ltdd.export import EXPORTERS
from ltdd.models import MODELS
from ltdd.select.policy import TAIL_POLICIES
from ltdd.tracking import CHOICES as TRACKER_CHOICES


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of every other user error (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"ltdd: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


# Errors of the machine rather than of ltdd: a full disk, a read-only or forbidden path.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.ENAMETOOLONG,
}


def _add_data_args(p: argparse.ArgumentParser, test_profile: bool = False) -> None:
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        help="dataset source (fashion-mnist, mnist, cifar10, cifar100, tiny-imagenet, "
        "folder, procedural); default fashion-mnist",
    )
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder holding the dataset's official files (e.g. the parent of "
        "cifar-10-batches-py); default: the system or cache location",
    )
    p.add_argument(
        "--imbalance-factor",
        type=float,
        default=100.0,
        metavar="BETA",
        help="beta = n_max / n_min >= 1 (1 = balanced); default 100",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the long-tailed selection")
    if test_profile:
        p.add_argument(
            "--test-profile",
            choices=("balanced", "long-tailed"),
            default="balanced",
            help="report the balanced test counts, or the same beta applied to the "
            "test split (supplementary Table 6)",
        )


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<i>; default auto")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file (see configs/)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override any config key with a dotted path, e.g. data.imbalance_factor=200",
    )
    _add_device(p)


def _add_tracker(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracker",
        choices=TRACKER_CHOICES,
        default="none",
        help="also stream metrics.jsonl and image grids to TensorBoard or wandb (offline), "
        "under <out>/tracking; the package must be installed; default none",
    )
    p.add_argument(
        "--tracker-images",
        type=int,
        default=50,
        metavar="K",
        help="image grid every K iterations (0: none); default 50",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ltdd",
        description="Long-tailed dataset distillation: build long-tailed benchmarks, train expert "
        "trajectories, distil small balanced sets (MTT, DATM, LTDD) and evaluate them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "data",
        help="describe a long-tailed split (class counts, index hash)",
        description="Build the long-tailed split of a dataset and write its class "
        "counts and selection fingerprint as JSON.",
    )
    _add_data_args(p, test_profile=True)
    p.add_argument("--json", type=Path, required=True, metavar="OUT", help="where to write JSON")
    p.set_defaults(func=commands.data)

    p = sub.add_parser(
        "baseline",
        help="write a real-image baseline as a distilled-set file",
        description="Real-image baselines in the distilled-set format: `random` "
        "draws IPC images per class; `full` keeps the whole long-tailed "
        "training set (the upper bound).",
    )
    p.add_argument("kind", choices=("random", "full"), help="which baseline")
    _add_data_args(p)
    p.add_argument("--ipc", type=int, default=10, help="images per class (random); default 10")
    p.add_argument(
        "--tail-policy",
        choices=TAIL_POLICIES,
        default="duplicate",
        help="classes with fewer than IPC images: duplicate them cyclically "
        "(reference), keep all there are, or refuse; default duplicate",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=0.01,
        help="learning rate stored with the set, used by evaluate; default 0.01",
    )
    p.add_argument("--out", type=Path, required=True, help="distilled-set .safetensors to write")
    p.set_defaults(func=commands.baseline)

    p = sub.add_parser(
        "evaluate",
        help="train fresh networks on a distilled set and test them",
        description="Train --seeds fresh networks on the set (reference protocol: "
        "SGD momentum 0.9, wd 5e-4, lr from the file, /10 at half-way, "
        "DSA) and report accuracy, per-class accuracy, macro "
        "precision/recall/F1 and head/medium/tail accuracy.",
    )
    p.add_argument("file", type=Path, help="distilled-set .safetensors file")
    p.add_argument("--epochs", type=int, default=1000, help="training epochs; default 1000")
    p.add_argument("--seeds", type=int, default=3, help="networks to train; default 3")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first network")
    p.add_argument(
        "--test-profile",
        choices=tuple(PROFILES),
        default="both",
        help="balanced, long-tailed or both test sets; default both",
    )
    p.add_argument(
        "--arch",
        choices=MODELS.names(),
        default=None,
        help="evaluation network; default: the one the set was made for",
    )
    p.add_argument("--width", type=int, default=None, help="network width override")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size")
    p.add_argument("--lr", type=float, default=None, help="override the file's learning rate")
    p.add_argument("--root", type=Path, default=None, help="dataset root, if it moved")
    p.add_argument("--json", type=Path, required=True, metavar="OUT", help="where to write JSON")
    _add_device(p)
    p.set_defaults(func=commands.evaluate)

    p = sub.add_parser(
        "show",
        help="save a PNG grid of a distilled set, one row per class",
        description="Invert the preprocessing (ZCA, normalisation) and save the "
        "images as a grid with one row per class.",
    )
    p.add_argument("file", type=Path, help="distilled-set .safetensors file")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--max-per-class", type=int, default=10, help="columns; default 10")
    p.add_argument("--root", type=Path, default=None, help="dataset root, if it moved")
    p.set_defaults(func=commands.show)

    p = sub.add_parser(
        "experts",
        help="train expert trajectories (resumable, torchrun-aware)",
        description="Train expert networks and store their trajectories (one "
        "safetensors file per expert + manifest.json). Config "
        "sections: data, experts. Killed runs resume where they "
        "stopped; under torchrun the experts are split over ranks.",
    )
    _add_config_args(p)
    p.add_argument("--out", type=Path, required=True, help="store directory to write")
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="representation store that classifier experts start from",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the expected disk, memory and time, train nothing",
    )
    p.set_defaults(func=commands.experts)

    p = sub.add_parser(
        "distill",
        help="distil a long-tailed set with mtt, datm or ltdd",
        description="Trajectory-matching distillation. Config sections: data, "
        "distill (see configs/official and configs/cpu). Resumes "
        "from the checkpoint in --out.",
    )
    _add_config_args(p)
    p.add_argument(
        "--experts",
        type=Path,
        required=True,
        help="folder with one expert store per kind (representation/, classifier/, "
        "mtt/, datm/) as `ltdd run` lays them out",
    )
    p.add_argument(
        "--share-experts",
        default=None,
        metavar="KIND",
        help="let mtt and datm match the KIND store (e.g. representation)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    _add_tracker(p)
    p.set_defaults(func=commands.distill_cmd)

    p = sub.add_parser(
        "run",
        help="data -> experts -> sets -> evaluation -> report",
        description="Run every stage of a run config in runs/<name>/, reusing "
        "each stage whose configuration hash matches and recomputing "
        "the rest; prints the results table and the report path.",
    )
    _add_config_args(p)
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for the stages after the data (expert stores, sets, upper "
        "bounds, evaluations), each with an equal share of the CPU threads, each stage "
        "starting once what it reads is written; default: the config's `jobs` (1)",
    )
    _add_tracker(p)
    p.set_defaults(func=commands.run)

    p = sub.add_parser(
        "export",
        help="write a distilled set as PNG class folders or plain arrays",
        description="Export a set for use without ltdd: `folder` writes train/<class>/*.png "
        "(preprocessing inverted, 8-bit) with labels.json and labels.csv (soft labels, lr); "
        "`npz` and `pt` write plain arrays. --out must not exist or be empty.",
    )
    p.add_argument("file", type=Path, help="distilled-set .safetensors file")
    p.add_argument("--format", choices=EXPORTERS.names(), default="folder", help="default folder")
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    p.add_argument("--root", type=Path, default=None, help="dataset root, if it moved")
    p.set_defaults(func=commands.export)

    p = sub.add_parser(
        "report",
        help="rebuild report.md and figures from run directories",
        description="Rebuild the report from the files of one run directory, or "
        "of several (e.g. one per β) shown side by side.",
    )
    p.add_argument("run_dirs", type=Path, nargs="+", help="run directories (first = main)")
    p.add_argument(
        "--out", type=Path, default=None, help="report folder; default <first run>/report"
    )
    p.set_defaults(func=commands.report)
    return parser


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except UserError as exc:
        print(f"ltdd: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ltdd: error: {where}{exc.strerror}; nothing was replaced", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltdd: interrupted", file=sys.stderr)
        return 130
    return 0
