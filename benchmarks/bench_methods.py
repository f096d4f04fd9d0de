"""Every method on Fashion-MNIST-LT across imbalance factors and IPC (the README's results table).

Runs `ltdd run` with the science profile (configs/run/fmnist-lt.yaml) once per (β, IPC); the
runs of one β share their data and expert stages (copied, then reused by hash). Extra `key=value`
arguments override the profile in every cell (e.g. `device=cuda`). Writes
benchmarks/results/<name>.md with, per cell, balanced and long-tailed test accuracy (Table 6),
DD-Ranking (Table 8), the wall time of each method (Table 9) and other networks when evaluated,
plus a report across β (Figure 8) per IPC under benchmarks/results/<name>-report-ipc<IPC>/.
`--report-only` rebuilds all of that from run directories computed elsewhere (cells that are
missing or unfinished are listed, not computed).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from ltdd.config import load_config
from ltdd.io import write_text
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import run_pipeline
from ltdd.report.build import RunFiles, build_report, load_run
from ltdd.report.tables import cross_arch_table, frac, group, markdown_table

from common import RESULTS, header, pct

ROOT = Path(__file__).resolve().parent.parent
SHARED = ("data.json", "data.stage.json", "preprocess.safetensors", "experts")


def cell_config(config: Path, runs_dir: Path, beta: float, ipc: int, extra: list[str]) -> RunConfig:
    overrides = [f"data.imbalance_factor={beta}", f"ipc={ipc}", f"name=b{beta:g}-ipc{ipc}"]
    return load_config(RunConfig, config, [*overrides, f"runs_dir={runs_dir}", *extra])


def run_cell(cfg: RunConfig, first: Path | None) -> Path:
    if first is not None and not cfg.run_dir.exists():  # reuse this β's data and experts
        cfg.run_dir.mkdir(parents=True)
        for item in SHARED:
            src = first / item
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, cfg.run_dir / item)
    run_pipeline(cfg)
    return cfg.run_dir


def is_finished(cfg: RunConfig) -> bool:
    """Every method (and the full-data bound) of the cell has its evaluation file."""
    names = [*cfg.methods, *(["full"] if cfg.evaluate.full_data else [])]
    return all((cfg.run_dir / "eval" / f"{m}.json").is_file() for m in names)


def cell_table(run: RunFiles) -> str:
    rows = []
    for method, ev in run.evals.items():
        b, lt, dd = ev["balanced"], ev.get("long_tailed"), ev.get("ddranking")
        wall = run.timings.get(f"set/{method}", {}).get("wall_s")
        rows.append(
            [
                method,
                pct(b["accuracy"]),
                pct(group(b, "tail")),
                pct(lt["accuracy"]) if lt else "–",
                frac(lt["macro_f1"]) if lt else "–",
                pct(dd["hlr"]) if dd else "–",
                pct(dd["ior"]) if dd else "–",
                frac(dd["lrs"]) if dd else "–",
                "–" if wall is None else f"{wall:.0f}",
            ]
        )
    columns = ["method", "balanced acc.", "tail acc.", "LT-test acc.", "LT macro-F1"]
    columns += ["HLR (pp)", "IOR (pp)", "LRS", "set wall s"]
    table = markdown_table(columns, rows)
    if run.cross:
        table += "\n\nOther evaluation networks (balanced accuracy):\n\n"
        table += cross_arch_table(run.evals, run.cross)
    return table


def summary_table(cells: dict[tuple[float, int], RunFiles], ipc: int) -> str:
    """Balanced test accuracy, one row per method, one column per β (the paper's Table 1 shape)."""
    betas = [b for b, i in cells if i == ipc]
    runs = {b: cells[b, ipc] for b in betas}
    methods = list(dict.fromkeys(m for run in runs.values() for m in run.evals))
    rows = [
        [
            m,
            *(
                pct(runs[b].evals[m]["balanced"]["accuracy"]) if m in runs[b].evals else "–"
                for b in betas
            ),
        ]
        for m in methods
    ]
    return markdown_table(["method", *(f"β = {b:g}" for b in betas)], rows)


def describe(cfg: RunConfig) -> str:
    ev = cfg.evaluate
    return (
        f"ConvNet width {ev.train.width}; MTT, DATM and LTDD match the same "
        "representation experts (LTDD adds classifier experts retrained from them); every set is "
        f"evaluated by training fresh networks ({ev.seeds} seeds, {ev.train.epochs} epochs, DSA) "
        "and testing once at the end. Accuracy in %, mean ± std (ddof 0) over seeds. "
        "Tail = the last third of classes by log count (classes 6-9 of Fashion-MNIST)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--betas", type=float, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--ipcs", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/run/fmnist-lt.yaml")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs/bench")
    parser.add_argument("--name", default="methods")
    parser.add_argument(
        "--methods", nargs="+", default=None, help="methods to run (default: the config's list)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="compute nothing: tables and reports from the finished cells under --runs-dir",
    )
    parser.add_argument(
        "--device-name", default=None, help="device named in the results (default: this machine)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="profile overrides")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # stage reuse/compute lines

    extra = [*args.overrides, *([f"methods=[{', '.join(args.methods)}]"] if args.methods else [])]
    cells: dict[tuple[float, int], RunFiles] = {}
    missing = []
    for beta in args.betas:
        first = None
        for ipc in args.ipcs:
            cfg = cell_config(args.config, args.runs_dir, beta, ipc, extra)
            if not args.report_only:
                run_dir = run_cell(cfg, first)
                first = first or run_dir
            if is_finished(cfg):
                cells[beta, ipc] = load_run(cfg.run_dir)
            else:
                missing.append(cfg.run_dir.name)

    lines = [
        header("Every method on Fashion-MNIST-LT", args.device_name),
        f"Profile `{args.config.relative_to(ROOT)}`"
        + (f" with `{' '.join(args.overrides)}`" if args.overrides else "")
        + ". "
        + describe(cfg),
        "",
    ]
    if missing:
        lines += [f"Not finished, left out: {', '.join(missing)}.", ""]
    for ipc in args.ipcs:
        if any(i == ipc for _, i in cells):
            lines += [f"## Balanced test accuracy, IPC {ipc}", "", summary_table(cells, ipc), ""]
    for (beta, ipc), run in cells.items():
        lines += [f"## β = {beta:g}, IPC {ipc}", "", cell_table(run), ""]
    for ipc in args.ipcs:
        runs = [cells[b, ipc].path for b in args.betas if (b, ipc) in cells]
        if runs:
            report = build_report(runs, RESULTS / f"{args.name}-report-ipc{ipc}")
            lines.append(f"Report across β at IPC {ipc}: `{report.relative_to(ROOT)}`.")
    write_text(RESULTS / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
