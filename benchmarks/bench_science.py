"""Issue 9's science table: every method of finished `ltdd run` cells with its distillation gain,
the experts behind them (validation accuracy per epoch), the full-data upper bounds and the
ablations, in benchmarks/results/<name>.md and .json (design.md's interface contract).

A cell is a run directory of the profile (e.g. configs/run/fmnist-lt-large.yaml). An ablation
is a run directory holding the same data and experts and one method with some keys changed
(`--ablation LABEL=DIR`); it is shown next to its cell. Nothing is computed except forward
passes of the saved experts:
- the experts' balanced accuracy on the validation split carved from the training set after
  every epoch (what "trained until it stops rising" is judged on), and on the test set at the
  epoch chosen on validation;
- `full (experts)`: the representation experts are networks trained on the whole long-tailed
  training set (SGD momentum 0.9, DSA, batch 256); the row is their balanced test accuracy at
  the epoch whose mean validation accuracy is highest, one run per expert;
- `full cRT (class-balanced)`: the classifier experts are the same networks with the classifier
  retrained on class-balanced re-sampled batches (cRT), so a class-balanced re-sampled full-data
  row; final epoch.
Sets are evaluated by the run itself (`eval/<method>.json`, fresh networks, several seeds; the
gain from `eval/init/<method>.json`, the iteration-0 set under the same evaluation).

Run: `.venv/bin/python benchmarks/bench_science.py --cells runs/b100-ipc10 [...]
[--ablation 'ltdd faithful=runs/b100-ipc10-faithful' ...] [--keep benchmarks/results/science.json]`
(`--keep`: the earlier file's rows of run directories not read now stay, e.g. when they are
gone). An ablation folder gives rows for its distilled methods only; one whose cell is not among
`--cells` (a kept cell) gets a table of its own.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from ltdd.config import load_config
from ltdd.data.dataset import LongTailedData, prepare_data
from ltdd.data.preprocess import Preprocessing
from ltdd.distill.diagnostics import read_metrics, summarize
from ltdd.distill.methods import METHODS
from ltdd.evaluate.metrics import classification_report
from ltdd.evaluate.trainer import predict
from ltdd.experts import TrajectoryStore
from ltdd.io import load_tensors, read_json, write_json, write_text
from ltdd.pipeline.config import RunConfig
from ltdd.select import model_from_flat

from common import RESULTS, header, provenance

ROOT = Path(__file__).resolve().parent.parent


def rel(path: Path) -> str:
    """`path` relative to the repository root (as results files name paths)."""
    return os.path.relpath(Path(path).resolve(), ROOT)


SET_PROTOCOL = "sets: fresh ConvNet per seed trained on the set alone, final epoch, balanced test"


def cell_config(run_dir: Path) -> RunConfig:
    return load_config(RunConfig, run_dir / "config.yaml")


def load_data(run_dir: Path, cfg: RunConfig) -> LongTailedData:
    return prepare_data(cfg.data, Preprocessing.load(run_dir / "preprocess.safetensors"))


def balanced(model, images, labels, data) -> float:
    report = classification_report(
        labels.numpy(), predict(model, images), data.num_classes, data.train_counts
    )
    return float(report["accuracy"])


def expert_model(store: TrajectoryStore, spec: dict, data: LongTailedData, e: int, epoch: int):
    overrides = {k: v for k, v in spec.items() if k != "name" and v is not None}
    flat = store.snapshot(e, epoch)
    return model_from_flat(
        spec["name"], data.num_classes, data.image_shape, flat, **overrides
    ).eval()


def expert_curves(store: TrajectoryStore, spec: dict, data: LongTailedData) -> dict:
    """Per expert: balanced validation accuracy at every kept epoch; balanced test accuracy at
    the epoch with the best mean validation accuracy only (the test set chooses nothing)."""
    val = [
        [
            balanced(
                expert_model(store, spec, data, e, epoch), data.val_images, data.val_labels, data
            )
            for epoch in store.epochs
        ]
        for e in range(store.num_experts)
    ]
    best = int(np.argmax(np.mean(val, axis=0)))
    test = [
        balanced(
            expert_model(store, spec, data, e, store.epochs[best]),
            data.test_images,
            data.test_labels,
            data,
        )
        for e in range(store.num_experts)
    ]
    return {"epochs": store.epochs, "val": val, "best": best, "test": test}


def summary(values: list[float]) -> dict:
    a = np.asarray(values, float)
    return {"mean": float(a.mean()), "std": float(a.std()), "runs": a.tolist()}


def set_rows(run_dir: Path, cfg: RunConfig, label: str | None = None) -> list[dict]:
    """A row per evaluated method of `run_dir` (several `ltdd run` calls may have shared it);
    with `label` (an ablation folder), only its distilled methods, named `label`: its real-image
    baselines repeat its cell's, since they share the experts."""
    rows = []
    order = ["random", "herding", "kcenter", "mtt", "datm", "ltdd"]
    found = [m for m in order if (run_dir / "eval" / f"{m}.json").is_file()]
    if label is not None:
        found = [m for m in found if m in METHODS]
    for method in found:
        path = run_dir / "eval" / f"{method}.json"
        ev = read_json(path)
        acc = ev["balanced"]["accuracy"]
        epochs = ev["settings"]["train"]["epochs"]  # what the evaluation did, not the config
        row = {
            "dataset": cfg.data.dataset,
            "method": method if label is None else label,
            "beta": cfg.data.imbalance_factor,
            "ipc": cfg.ipc,
            "protocol": f"{SET_PROTOCOL}; {epochs} epochs",
            "balanced_accuracy": {
                k: (100 * v if k != "runs" else [100 * x for x in v]) for k, v in acc.items()
            },
            "tail_accuracy": 100 * ev["balanced"]["groups"]["tail"]["accuracy"]["mean"],
            "run_dir": rel(run_dir),
        }
        init = run_dir / "eval" / "init" / f"{method}.json"
        if init.is_file():
            initial = read_json(init)
            if initial["settings"]["train"]["epochs"] != epochs:
                raise SystemExit(
                    f"{init} and {path} were evaluated for different lengths (is the run finished?)"
                )
            row["distillation_gain"] = initial["distillation_gain"]
            row["initial_balanced_accuracy"] = 100 * initial["balanced"]["accuracy"]["mean"]
        metrics = run_dir / "distill" / method / "metrics.jsonl"
        if metrics.is_file():
            meta_file = run_dir / "distill" / method / "initial.safetensors"
            init_record = load_tensors(meta_file)[1].get("init") if meta_file.is_file() else None
            row["diagnostics"] = summarize(read_metrics(metrics), init_record)
            row["settings"] = load_tensors(run_dir / "distill" / method / "distilled.safetensors")[
                1
            ]["config"]
        rows.append(row)
    return rows


def evaluation_length(rows: list[dict]) -> str:
    """How long the sets' evaluation networks were trained, from the rows' protocols."""
    lengths = {
        r["protocol"].rpartition("; ")[2] for r in rows if r["protocol"].startswith(SET_PROTOCOL)
    }
    return " / ".join(sorted(lengths, key=lambda x: int(x.split()[0])))


def full_rows(run_dir: Path, cfg: RunConfig, data: LongTailedData, lines: list[str]) -> list[dict]:
    rows = []
    spec = {
        "name": cfg.experts.representation.model,
        "width": cfg.experts.representation.width,
        "depth": cfg.experts.representation.depth,
        "norm": cfg.experts.representation.norm,
    }
    base = {
        "dataset": cfg.data.dataset,
        "beta": cfg.data.imbalance_factor,
        "ipc": None,
        "run_dir": rel(run_dir),
    }
    rep = TrajectoryStore(run_dir / "experts" / "representation")
    curves = expert_curves(rep, spec, data)
    mean_val = np.mean(curves["val"], axis=0)
    best = curves["best"]
    epoch = curves["epochs"][best]
    lines += [
        f"### Representation experts (= full-data training), β = {cfg.data.imbalance_factor:g}",
        "",
        "Balanced accuracy (%) on the validation split carved from the training set after "
        "each epoch (mean over experts; the test set is read only at the chosen epoch).",
        "",
        "| epoch | " + " | ".join(str(e) for e in curves["epochs"]) + " |",
        "|---|" + "---:|" * len(curves["epochs"]),
        "| validation | " + " | ".join(f"{100 * v:.1f}" for v in mean_val) + " |",
        "",
        f"Epoch chosen on validation: {epoch}; balanced test accuracy there: "
        + ", ".join(f"{100 * t:.1f}" for t in curves["test"])
        + " (per expert).",
        "",
    ]
    rows.append(
        {
            **base,
            "method": "full (experts)",
            "protocol": f"representation experts: whole LT training set, epoch {epoch} of "
            f"{rep.num_epochs} chosen on validation; one run per expert",
            "balanced_accuracy": summary([100 * t for t in curves["test"]]),
            "epochs_chosen_on_validation": epoch,
            "validation_per_epoch": curves["val"],
        }
    )
    cls_dir = run_dir / "experts" / "classifier"
    if (cls_dir / "manifest.json").is_file():
        cls = TrajectoryStore(cls_dir)
        reports = []
        for e in range(cls.num_experts):
            model = expert_model(cls, spec, data, e, cls.epochs[-1])
            reports.append(
                {
                    "val": balanced(model, data.val_images, data.val_labels, data),
                    "test": classification_report(
                        data.test_labels.numpy(),
                        predict(model, data.test_images),
                        data.num_classes,
                        data.train_counts,
                    ),
                }
            )
        groups = [
            {g: r["test"]["groups"][g]["accuracy"] for g in ("head", "tail")} for r in reports
        ]
        lines += [
            "### Classifier experts (cRT: classifier retrained on class-balanced batches)",
            "",
            "| expert | val. balanced (%) | test balanced (%) | test head (%) | test tail (%) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for e in range(cls.num_experts):
            lines.append(
                f"| {e} | {100 * reports[e]['val']:.1f} | "
                f"{100 * reports[e]['test']['accuracy']:.1f} | "
                f"{100 * groups[e]['head']:.1f} | {100 * groups[e]['tail']:.1f} |"
            )
        lines.append("")
        rows.append(
            {
                **base,
                "method": "full cRT (class-balanced)",
                "protocol": "classifier experts: the representation experts' classifier "
                f"retrained {cls.num_epochs} epoch(s) on class-balanced re-sampled batches; "
                "final epoch; one run per expert",
                "balanced_accuracy": summary([100 * r["test"]["accuracy"] for r in reports]),
                "head_tail_accuracy": groups,
            }
        )
    return rows


def fmt(row: dict) -> str:
    acc = row["balanced_accuracy"]
    gain = row.get("distillation_gain")
    diag = row.get("diagnostics") or {}
    change = diag.get("image_change_final")
    alpha = diag.get("alpha")
    val = diag.get("validation") or []
    return (
        f"| {row['method']} | {acc['mean']:.1f} ± {acc['std']:.1f} ({len(acc['runs'])}) | "
        + (f"{row['tail_accuracy']:.1f}" if "tail_accuracy" in row else "–")
        + " | "
        + ("–" if gain is None else f"{gain['mean']:+.1f} ± {gain['std']:.1f}")
        + " | "
        + (", ".join(f"{a:.4g}" for a in alpha[-1][1]) if alpha else "–")
        + " | "
        + (", ".join(f"{x:.3f}" for x in diag.get("phase_loss_last_over_first", [])) or "–")
        + " | "
        + (f"{np.mean(change):.3f}" if change else "–")
        + " | "
        + (" → ".join(f"{100 * v:.1f}" for _, v in val) or "–")
        + " |"
    )


def cell_table(title: str, rows: list[dict]) -> list[str]:
    return [
        "",
        title,
        "",
        "Balanced test accuracy in % (mean ± population std over evaluation seeds, number "
        "of runs in brackets); gain = final set minus its iteration-0 set, per seed paired "
        "(points); α = learned learning rate(s) at the end; loss = matching loss at the "
        "last iteration over the first, per phase; change = mean over classes of "
        "‖X_T − X_0‖/‖X_0‖; validation = balanced accuracy on the carved validation split "
        "during distillation (one network, iteration 0 first).",
        "",
        "| method | balanced acc. | tail acc. | gain (pp) | α final | loss last/first | "
        "change | validation (%) |",
        "|---|---|---:|---|---|---|---:|---|",
        *[fmt(r) for r in rows],
    ]


def kept_rows(path: Path, read: list[dict]) -> list[dict]:
    """The rows of an earlier results file of this script from run directories not read in this
    call (so a table can grow by a cell, or a cell be rerun, after the run directories behind the
    other rows are gone). Full-data rows name the experts' run directory too; an older one that
    does not is kept only while no full-data row of its β is read."""
    folders = {r["run_dir"] for r in read if "run_dir" in r}
    betas = {r["beta"] for r in read if r["ipc"] is None}
    return [
        {**r, "kept_from": rel(path)}
        for r in read_json(path)["rows"]
        if (r["run_dir"] not in folders if "run_dir" in r else r["beta"] not in betas)
    ]


def kept_lines(rows: list[dict], source: Path) -> list[str]:
    """Tables of the kept rows: one per (β, IPC) cell, and their full-data rows."""
    lines = []
    for beta, ipc in sorted({(r["beta"], r["ipc"]) for r in rows if r["ipc"] is not None}):
        cell = [r for r in rows if (r["beta"], r["ipc"]) == (beta, ipc)]
        folder = cell[0].get("run_dir", "?")
        lines += cell_table(
            f"## β = {beta:g}, IPC {ipc}: rows kept from `{rel(source)}` (`{folder}`, ...)", cell
        )
    full = [r for r in rows if r["ipc"] is None]
    if full:
        lines += [
            "",
            f"Full-data rows kept from `{rel(source)}` (their tables are in its history):",
            "",
            "| β | row | balanced acc. | experts of |",
            "|---|---|---|---|",
            *[
                f"| {r['beta']:g} | {r['method']} | {r['balanced_accuracy']['mean']:.1f} ± "
                f"{r['balanced_accuracy']['std']:.1f} | `{r.get('run_dir', '?')}` |"
                for r in full
            ],
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", type=Path, required=True)
    parser.add_argument("--ablation", action="append", default=[], help="LABEL=RUN_DIR")
    parser.add_argument("--name", default="science")
    parser.add_argument("--note-file", type=Path, help="markdown added under the header")
    parser.add_argument(
        "--keep",
        type=Path,
        help="an earlier results JSON of this script: its rows of run directories not read now "
        "(and its full-data rows of other β) are kept",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    ablations = [tuple(a.split("=", 1)) for a in args.ablation]
    lines = [header("LTDD against real-image selection on Fashion-MNIST-LT (issue 9)")]
    if args.note_file:
        lines += ["", args.note_file.read_text().strip()]
    all_rows, expert_lines = [], []
    unmatched = list(ablations)
    for cell in args.cells:
        cfg = cell_config(cell)
        data = load_data(cell, cfg)
        rows = set_rows(cell, cfg)
        for label, folder in ablations:
            if Path(folder).name.startswith(cell.name):
                rows += set_rows(Path(folder), cell_config(Path(folder)), label)
                unmatched.remove((label, folder))
        if cfg.data.imbalance_factor not in {r["beta"] for r in all_rows}:  # once per β
            rows += full_rows(cell, cfg, data, expert_lines)
        all_rows += rows
        title = (
            f"## β = {cfg.data.imbalance_factor:g}, IPC {cfg.ipc}, {evaluation_length(rows)} "
            f"(`{rel(cell)}`)"
        )
        lines += cell_table(title, rows)
    for label, folder in unmatched:  # ablations of a cell not read now (e.g. a kept one)
        cfg = cell_config(Path(folder))
        rows = set_rows(Path(folder), cfg, label)
        all_rows += rows
        title = f"## β = {cfg.data.imbalance_factor:g}, IPC {cfg.ipc}: ablation `{rel(folder)}`"
        lines += cell_table(title, rows)
    if args.keep:
        kept = kept_rows(args.keep, all_rows)
        lines += kept_lines(kept, args.keep)
        all_rows += kept
    lines += ["", "## Experts and the full-data upper bounds", "", *expert_lines]
    text = "\n".join(lines) + "\n"
    write_text(RESULTS / f"{args.name}.md", text)
    write_json(
        RESULTS / f"{args.name}.json",
        {
            **provenance(),
            "rows": all_rows,
        },
    )
    print(text)


if __name__ == "__main__":
    main()
