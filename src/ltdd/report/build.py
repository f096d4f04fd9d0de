"""`build_report`: report.md and its figures from the files of one or more run directories."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ltdd.config import read_yaml
from ltdd.data.preprocess import Preprocessing
from ltdd.distilled import DistilledSet
from ltdd.errors import UserError
from ltdd.io import read_json, write_text
from ltdd.report import figures, tables
from ltdd.report.diagnostics import diagnostics_section
from ltdd.schema import NUMBER, DictOf, ListOf, Maybe, check

SET_FILE = "distilled.safetensors"

# What the report reads of each file of a run directory (extra keys are ignored).
SUMMARY = {"mean": NUMBER, "std": NUMBER}
PROFILE = {
    "accuracy": SUMMARY,
    "macro_precision": SUMMARY,
    "macro_recall": SUMMARY,
    "macro_f1": SUMMARY,
    "per_class_accuracy": ListOf(Maybe(NUMBER)),
    "groups": DictOf(Maybe({"accuracy": SUMMARY})),
}
EVAL_SCHEMA = {
    "balanced": PROFILE,
    "long_tailed?": PROFILE,
    "ddranking?": Maybe(
        {"hlr": SUMMARY, "ior": SUMMARY, "lrs": SUMMARY, "syn_hard_accuracy": SUMMARY}
    ),
}
DATA_SCHEMA = {
    "dataset": str,
    "imbalance_factor": NUMBER,
    "num_classes": int,
    "class_names": ListOf(str),
    "train_counts": ListOf(int),
    "test_lt_counts": ListOf(int),
}
TIMINGS_SCHEMA = DictOf(
    {
        "wall_s": NUMBER,
        "cpu_hours": NUMBER,
        "peak_rss_mb": NUMBER,
        "gpu_hours?": NUMBER,
        "peak_gpu_mb?": Maybe(NUMBER),
    }
)
CONFIG_SCHEMA = {"methods?": ListOf(str)}
METRICS_LINE = {"iteration": NUMBER, "phase_losses?": ListOf(NUMBER)}


def _read_data(path: Path) -> dict:
    data = check(read_json(path), DATA_SCHEMA, str(path))
    n = data["num_classes"]
    if n < 1 or len(data["class_names"]) != n or len(data["test_lt_counts"]) != n:
        raise UserError(f"{path}: num_classes, class_names and test_lt_counts disagree")
    if sum(data["test_lt_counts"]) <= 0 or min(data["test_lt_counts"]) < 0:
        raise UserError(f"{path}: test_lt_counts must be counts with a positive total")
    return data


def _read_eval(path: Path, num_classes: int) -> dict:
    result = check(read_json(path), EVAL_SCHEMA, str(path))
    for profile in ("balanced", "long_tailed"):
        if profile in result and len(result[profile]["per_class_accuracy"]) != num_classes:
            raise UserError(f"{path}: {profile}.per_class_accuracy does not list {num_classes}")
    return result


def _check_metrics(path: Path) -> None:
    """A distillation's metrics.jsonl: one JSON object per line, phases of one length."""
    phases = set()
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise UserError(f"{path}:{number}: not a JSON line") from None
        check(row, METRICS_LINE, f"{path}:{number}")
        if "phase_losses" in row:  # the iteration-0 validation line has none
            phases.add(len(row["phase_losses"]))
    if len(phases) > 1:
        raise UserError(f"{path}: lines list different numbers of phase losses")


@dataclass
class RunFiles:
    """What a finished run directory holds, read once."""

    path: Path
    data: dict
    evals: dict[str, dict]
    cross: dict[str, dict[str, dict]]
    timings: dict[str, dict]

    @property
    def beta(self) -> float:
        return float(self.data["imbalance_factor"])

    @property
    def label(self) -> str:
        return f"β={self.beta:g}"


def load_run(path: Path) -> RunFiles:
    """Read data.json, eval/*.json and timings.json of a run directory."""
    path = Path(path)
    if not (path / "data.json").is_file():
        raise UserError(f"{path}: not an ltdd run directory (no data.json); run `ltdd run` first")
    data = _read_data(path / "data.json")
    evals: dict[str, dict] = {}
    cross: dict[str, dict[str, dict]] = {}
    for file in sorted((path / "eval").glob("*.json")):
        if file.name.endswith(".stage.json"):
            continue
        result = _read_eval(file, data["num_classes"])
        method, _, arch = file.stem.partition("@")
        if arch:
            cross.setdefault(method, {})[arch] = result
        else:
            evals[method] = result
    order = _method_order(path)
    evals = {m: evals[m] for m in sorted(evals, key=lambda m: order.get(m, len(order)))}
    timings_path = path / "timings.json"
    timings = (
        check(read_json(timings_path), TIMINGS_SCHEMA, str(timings_path))
        if timings_path.is_file()
        else {}
    )
    return RunFiles(path, data, evals, cross, timings)


def _method_order(path: Path) -> dict[str, int]:
    config = path / "config.yaml"
    methods = ["full"]
    if config.is_file():
        methods += check(read_yaml(config), CONFIG_SCHEMA, str(config)).get("methods", [])
    return {m: i for i, m in enumerate(methods)}


def build_report(run_dirs: list[Path], out_dir: Path | None = None) -> Path:
    """Write `report.md` (and PNG figures) for the runs; the first run is the main one."""
    runs = [load_run(p) for p in run_dirs]
    main = runs[0]
    # Read and check every input before the first figure is written: a bad file writes nothing.
    metrics = {m: main.path / "distill" / m / "metrics.jsonl" for m in main.evals}
    metrics = {m: p for m, p in metrics.items() if p.is_file()}
    for file in metrics.values():
        _check_metrics(file)
    panels = _image_panels(runs)
    out_dir = Path(out_dir) if out_dir is not None else main.path / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    data = main.data
    names = data["class_names"]
    lt_counts = data["test_lt_counts"]
    head_only = lt_counts[0] / sum(lt_counts)
    sections = [
        f"# ltdd report: {data['dataset']}-LT, β = {main.beta:g}",
        f"Run directory `{main.path}`. Training counts (head → tail): "
        f"{' '.join(map(str, data['train_counts']))}. Accuracy in %, mean ± std over "
        "evaluation seeds (population std); every network is trained on the set alone and "
        "tested once at the end, no number is selected on the test set. `full` is the whole "
        "long-tailed training set (the upper bound).",
        "## Balanced test set",
        tables.balanced_table(main.evals),
        "## Long-tailed test set (supplementary Table 6)",
        f"Test counts {' '.join(map(str, lt_counts))}. Accuracy alone misleads here: a model "
        f"that predicts the head class for every image scores {100 * head_only:.1f}% while "
        "recognising nothing else (macro recall 0.1 for 10 classes); macro precision, "
        "recall and F1 weigh every class equally.",
        tables.long_tailed_table(main.evals),
        "## Class-wise accuracy (supplementary Table 7)",
        "Long-tailed test set:",
        tables.classwise_table(main.evals, "long_tailed", names),
        "Balanced test set:",
        tables.classwise_table(main.evals, "balanced", names),
        "![class-wise accuracy](classwise.png)",
    ]
    ranked = {m: e for m, e in main.evals.items() if e.get("ddranking")}
    if ranked:
        sections += [
            "## DD-Ranking (supplementary Table 8)",
            "HLR = accuracy of the full long-tailed set with hard labels − accuracy of the "
            "set's images with hard labels; IOR = accuracy of the set with its own labels − "
            "accuracy of random real subsets of the same size per class, labelled and trained "
            "the same way; LRS = (e^α − e^−1)/(e − e^−1), α = (IOR − HLR)/2 with HLR and IOR "
            "as fractions (DD-Ranking, arXiv:2505.13300).",
            tables.ddranking_table(ranked),
        ]
    if main.cross:
        sections += [
            "## Cross-architecture evaluation (balanced accuracy)",
            tables.cross_arch_table(main.evals, main.cross),
        ]
    sections += diagnostics_section(main.path, list(main.evals))
    if main.timings:
        sections += [
            "## Compute cost (supplementary Table 9)",
            "Measured while each stage ran; `reused` stages show their original cost.",
            tables.cost_table(main.timings),
        ]
    figures.classwise_figure(
        {m: e["balanced"]["per_class_accuracy"] for m, e in main.evals.items()},
        names,
        out_dir / "classwise.png",
        "per-class accuracy, balanced test set",
    )
    if panels:
        figures.image_grid_figure(panels, out_dir / "images.png")
        sections += [
            "## Distilled images (supplementary Figure 8)",
            "One row per class (head at the top), preprocessing inverted.",
            "![distilled images](images.png)",
        ]
    if len(runs) > 1:
        sections += ["## Accuracy against β", _beta_table(runs), "![accuracy vs beta](beta.png)"]
        figures.accuracy_vs_beta_figure(_beta_points(runs), out_dir / "beta.png")
    if metrics:
        figures.loss_curves_figure(metrics, out_dir / "losses.png")
        sections += ["## Matching loss", "![matching loss](losses.png)"]
    report = out_dir / "report.md"
    write_text(report, "\n\n".join(sections) + "\n")
    return report


def _image_panels(runs: list[RunFiles]) -> dict:
    panels: dict[str, dict] = {}
    for run in runs:
        pre_path = run.path / "preprocess.safetensors"
        if not pre_path.is_file():
            continue
        pre = Preprocessing.load(pre_path)
        for method in run.evals:
            set_path = run.path / "distill" / method / SET_FILE
            if not set_path.is_file():
                continue
            s = DistilledSet.load(set_path, run.data["num_classes"], pre.image_shape_)
            pictures = pre.inverse_transform(s.images)
            cols = min(10, max(1, len(s.images) // run.data["num_classes"]))
            panels.setdefault(method, {})[run.label] = figures.mosaic(
                pictures, s.class_ids, run.data["num_classes"], cols
            )
    return panels


def _beta_points(runs: list[RunFiles]) -> dict:
    points: dict[str, list] = {}
    for run in runs:
        for method, ev in run.evals.items():
            acc = ev["balanced"]["accuracy"]
            points.setdefault(method, []).append((run.beta, acc["mean"], acc["std"]))
    return points


def _beta_table(runs: list[RunFiles]) -> str:
    methods = list(dict.fromkeys(m for r in runs for m in r.evals))
    rows = []
    for run in sorted(runs, key=lambda r: r.beta):
        rows.append(
            [f"{run.beta:g}"]
            + [
                tables.pct(run.evals[m]["balanced"]["accuracy"]) if m in run.evals else "–"
                for m in methods
            ]
        )
    return tables.markdown_table(["β"] + methods, rows)


def summary_markdown(run_dir: Path) -> str:
    """The results table printed at the end of `ltdd run`: balanced and long-tailed accuracy."""
    run = load_run(run_dir)
    rows = []
    for method, ev in run.evals.items():
        b, lt = ev["balanced"], ev.get("long_tailed")
        rows.append(
            [method, tables.pct(b["accuracy"])]
            + [tables.pct(tables.group(b, g)) for g in tables.GROUPS]
            + [
                tables.pct(lt["accuracy"]) if lt else "–",
                tables.frac(lt["macro_f1"]) if lt else "–",
            ]
        )
    header = ["method", "balanced acc.", "head", "medium", "tail", "LT-test acc.", "LT macro-F1"]
    return f"{run.data['dataset']}-LT β={run.beta:g}\n" + tables.markdown_table(header, rows)
