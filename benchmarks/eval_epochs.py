"""Choose the evaluation's training length on the validation split: a run's sets, each epoch count.

The shared protocol trains each evaluation network `evaluate.train.epochs` epochs (1000 in the
official code and in configs/run/fmnist-lt-large.yaml since this tool chose it, 300 in the other
CPU profiles). At IPC 10 an epoch is one SGD step, so the length may favour one kind of set
over another. This trains every named set of a finished run with the
evaluation's recipe at each `--epochs` value and the evaluation's seeds (paired: the same
networks' initialisations for every set and length) and scores balanced accuracy on the
validation split, never the test set. `--val-split key=value ...` scores on another validation
split (e.g. `data.val_from=held-out data.val_per_class=500`), preprocessed as the run's data.

Sets: a method of the run (`random`, `herding`, `ltdd`, ...) or `METHOD@init`, a distillation's
iteration-0 set. Scores are appended to `<run>/tune/eval-epochs.jsonl` as they come (a rerun
skips what is there), and the table goes to benchmarks/results/<out>.md and .json.

The run's own `config.yaml` says how its data were made (a profile file could differ from
the run's command-line overrides and would re-make the run's data stage).

Run: `.venv/bin/python benchmarks/eval_epochs.py --run runs/b100-ipc10 --sets random herding
ltdd ltdd@init --epochs 300 1000 --out eval-epochs-b100-ipc10 --val-split
data.val_from=held-out data.val_per_class=500`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from ltdd.config import load_config
from ltdd.data.dataset import LongTailedData
from ltdd.distill.engine import INITIAL
from ltdd.distilled import DistilledSet
from ltdd.errors import UserError
from ltdd.evaluate.metrics import classification_report
from ltdd.evaluate.trainer import predict, train_network
from ltdd.io import write_json, write_text
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import SET_FILE, Run

from common import RESULTS, header, provenance, swap_validation


def set_path(run: Path, name: str) -> Path:
    """The file of a set name: `METHOD` (its final set) or `METHOD@init` (iteration 0)."""
    method, _, tag = name.partition("@")
    if tag not in ("", "init"):
        raise UserError(f"set {name!r}: the only suffix is @init")
    path = run / "distill" / method / (INITIAL if tag else SET_FILE)
    if not path.is_file():
        raise UserError(f"set {name!r}: {path} does not exist (is the run finished?)")
    return path


def balanced_accuracy(pred: np.ndarray, truth: np.ndarray, data: LongTailedData) -> float:
    """Mean per-class accuracy over the classes present in `truth`, in percent."""
    report = classification_report(truth, pred, data.num_classes, data.train_counts)
    return 100 * float(np.mean([a for a in report["per_class_accuracy"] if a is not None]))


def read_scores(path: Path) -> dict[tuple, float]:
    """{(set, epochs, seed, split): accuracy} of the lines written so far."""
    scores = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            scores[(row["set"], row["epochs"], row["seed"], row["split"])] = row["val"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run directory")
    parser.add_argument("--sets", nargs="+", required=True, help="METHOD or METHOD@init")
    parser.add_argument("--epochs", type=int, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", required=True, help="name of the results files")
    parser.add_argument("--val-split", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run_overrides = [f"runs_dir={args.run.parent}", f"name={args.run.name}"]
    try:  # a bad key, value or set name is one line, before anything is computed
        cfg = load_config(RunConfig, args.run / "config.yaml", run_overrides)
        split = load_config(RunConfig, args.run / "config.yaml", [*run_overrides, *args.val_split])
        sets = {name: DistilledSet.load(set_path(args.run, name)) for name in args.sets}
    except UserError as err:
        parser.error(str(err))
    data = swap_validation(
        Run(cfg, progress=False).prepare(), split.data if args.val_split else None
    )
    if not len(data.val_labels):
        parser.error("the validation split is empty: set data.val_per_class (in --val-split)")
    split_name = " ".join(args.val_split) or "the run's"
    log = args.run / "tune" / "eval-epochs.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    scores = read_scores(log)
    seeds = range(cfg.evaluate.first_seed, cfg.evaluate.first_seed + args.seeds)
    truth = data.val_labels.numpy()
    for name, distilled in sets.items():
        for epochs in args.epochs:
            train = dataclasses.replace(cfg.evaluate.train, epochs=epochs)
            for seed in seeds:
                key = (name, epochs, seed, split_name)
                if key in scores:
                    continue
                model = train_network(
                    distilled.images,
                    distilled.labels,
                    distilled.lr,
                    data.num_classes,
                    train,
                    seed,
                    torch.device("cpu"),
                )
                pred = predict(model, data.val_images)
                scores[key] = balanced_accuracy(pred, truth, data)
                row = dict(zip(("set", "epochs", "seed", "split"), key, strict=True))
                with log.open("a") as f:
                    f.write(json.dumps({**row, "val": scores[key]}) + "\n")
                print(json.dumps({**row, "val": round(scores[key], 2)}), flush=True)
    rows = []
    for name in sets:
        for epochs in args.epochs:
            runs = [scores[(name, epochs, seed, split_name)] for seed in seeds]
            first = [scores[(name, args.epochs[0], seed, split_name)] for seed in seeds]
            rows.append(
                {
                    "set": name,
                    "epochs": epochs,
                    "val_balanced_accuracy": {
                        "mean": statistics.mean(runs),
                        "std": statistics.pstdev(runs),
                        "runs": runs,
                    },
                    "gain_over_first": statistics.mean(
                        a - b for a, b in zip(runs, first, strict=True)
                    ),
                }
            )
    lines = [
        header("Evaluation length chosen on the validation split"),
        f"- run `{args.run}`, β {cfg.data.imbalance_factor:g}, IPC {cfg.ipc}; validation split: "
        f"{split_name}; networks of the evaluation's recipe and seeds {list(seeds)}, the same "
        "for every set and length. The test set is not read.",
        "",
        f"| set | epochs | validation (%) per seed | mean ± std | vs {args.epochs[0]} epochs "
        "(pp) |",
        "|---|---:|---|---|---:|",
    ]
    for row in rows:
        acc = row["val_balanced_accuracy"]
        lines.append(
            f"| {row['set']} | {row['epochs']} | {', '.join(f'{x:.1f}' for x in acc['runs'])} "
            f"| {acc['mean']:.1f} ± {acc['std']:.1f} | {row['gain_over_first']:+.1f} |"
        )
    write_text(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(
        RESULTS / f"{args.out}.json",
        {
            **provenance(),
            "run": str(args.run),
            "beta": cfg.data.imbalance_factor,
            "ipc": cfg.ipc,
            "split": split_name,
            "rows": rows,
        },
    )
    print("\n".join(lines[-len(rows) - 2 :]))


if __name__ == "__main__":
    main()
