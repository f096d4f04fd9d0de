"""Split a distillation's validation gain into what the learned α did and what the learned set did.

A distilled set is (images, labels, α); α is also the rate its evaluation trains with, so a
distillation whose α grows gains accuracy even if its images and labels stay where they started.
For a grid trial of `tune_distill.py --grid --milestones`, this scores the two crossed sets on the
validation split with the same seeds as the trial's paired validation (`val.json`):
- `initial set, final α`: the iteration-0 images and labels trained with the snapshot's α;
- `final set, initial α`: the snapshot's images and labels trained with the iteration-0 α;
and writes benchmarks/results/<out>.md and .json with the four cells of the 2 × 2 (the
diagonal from val.json). `--eval-epochs N` trains the validation networks N epochs instead of the
trial's `eval_epochs` (e.g. the final evaluation's 300), and then scores the diagonal too. The
test set is not read.

Run: `.venv/bin/python benchmarks/alpha_control.py --trial
runs/b100-ipc10/tune/ltdd/grid/early-lrlr-img30-fd --snapshot it-0100.safetensors --data-run
runs/b100-ipc10 --config configs/run/fmnist-lt-large.yaml --seeds 3 --out alpha-control`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch

from ltdd.config import from_dict, load_config
from ltdd.distill.config import DistillConfig
from ltdd.distill.engine import INITIAL, derive_seed, validation_accuracy
from ltdd.errors import UserError
from ltdd.io import load_tensors, write_json, write_text
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run

from common import RESULTS, header, provenance, swap_validation


def cells(initial: dict, final: dict) -> dict[str, tuple]:
    """The 2 × 2: (images, labels, lr) of each set with each set's α, the diagonal first."""
    return {
        f"{images} set, {alpha} α": (sets["images"], sets["labels"], float(rate["lr"]))
        for images, alpha, sets, rate in (
            ("initial", "initial", initial, initial),
            ("final", "final", final, final),
            ("initial", "final", initial, final),
            ("final", "initial", final, initial),
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial", type=Path, required=True)
    parser.add_argument("--snapshot", required=True)
    parser.add_argument("--data-run", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="alpha-control")
    parser.add_argument(
        "--eval-epochs",
        type=int,
        default=None,
        help="epochs of each validation network (default: the trial's eval_epochs, whose "
        "diagonal is read from val.json)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides of the profile's data, e.g. data.val_from=held-out "
        "data.val_per_class=500: score on another validation split (with --eval-epochs, so "
        "that the diagonal is scored on it too), its images preprocessed as in --data-run, "
        "the run the trial's sets were made in",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    run_overrides = [f"runs_dir={args.data_run.parent}", f"name={args.data_run.name}"]
    try:  # a bad key or value is one line, before anything is computed
        cfg = load_config(RunConfig, args.config, run_overrides)
        split = load_config(RunConfig, args.config, [*run_overrides, *args.overrides]).data
    except UserError as err:
        parser.error(str(err))
    data = Run(cfg, progress=False).prepare()
    data = swap_validation(data, split if args.overrides else None)
    initial, _ = load_tensors(args.trial / INITIAL)
    final, meta = load_tensors(args.trial / args.snapshot)
    section = from_dict(DistillConfig, meta["config"])
    scores = {}
    if args.eval_epochs in (None, section.eval_epochs):
        val = json.loads((args.trial / "val.json").read_text())
        scores = {
            "initial set, initial α": val["sets"][INITIAL][: args.seeds],
            "final set, final α": val["sets"][args.snapshot][: args.seeds],
        }
        if min(len(s) for s in scores.values()) < args.seeds:
            parser.error(f"val.json has fewer than {args.seeds} seeds for the diagonal")
    else:
        section = dataclasses.replace(section, eval_epochs=args.eval_epochs)
    for name, (images, labels, lr) in cells(initial, final).items():
        if name in scores:
            continue
        scores[name] = [
            100
            * validation_accuracy(
                images,
                labels,
                lr,
                section,
                data,
                torch.device("cpu"),
                derive_seed(section.seed, 3, k),
            )
            for k in range(args.seeds)
        ]
    base = scores["initial set, initial α"]
    rows = {
        name: {
            "val_balanced_accuracy": s,
            "gain_over_initial": [a - b for a, b in zip(s, base, strict=True)],
        }
        for name, s in scores.items()
    }
    lines = [
        header("Learned α against learned set, on the validation split"),
        f"- trial `{args.trial}`, snapshot `{args.snapshot}` (iteration {meta['iterations']}); "
        f"α {float(initial['lr']):.4g} → {float(final['lr']):.4g}; {args.seeds} validation "
        f"networks per set ({section.eval_epochs} epochs), the seeds of the trial's paired "
        "validation. The test set is not read.",
        "",
        "| images + labels | α | validation (%) per seed | mean | gain over iteration 0 (pp) |",
        "|---|---|---|---:|---:|",
    ]
    for name, row in rows.items():
        images, alpha = name.split(", ")
        lines.append(
            f"| {images} | {alpha} | {', '.join(f'{x:.1f}' for x in row['val_balanced_accuracy'])} "
            f"| {statistics.mean(row['val_balanced_accuracy']):.1f} "
            f"| {statistics.mean(row['gain_over_initial']):+.1f} |"
        )
    write_text(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(
        RESULTS / f"{args.out}.json",
        {
            **provenance(),
            "trial": str(args.trial),
            "snapshot": args.snapshot,
            "iteration": meta["iterations"],
            "alpha": [float(initial["lr"]), float(final["lr"])],
            "rows": rows,
        },
    )
    print("\n".join(lines[-6:]))


if __name__ == "__main__":
    main()
