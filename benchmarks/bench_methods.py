"""Every method on Fashion-MNIST-LT across imbalance factors and IPC (the README's results table).

Runs `ltdd run` with the CPU science profile (configs/run/fmnist-lt.yaml) once per (β, IPC);
the runs of one β share their data and expert stages (copied, then reused by hash). Writes
benchmarks/results/<name>.md with the balanced-test table, the long-tailed test table
(Table 6), DD-Ranking (Table 8) and the wall time of each method (Table 9), plus a report
across β (Figure 8) under benchmarks/results/<name>-report/.
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
from ltdd.report.build import build_report, load_run
from ltdd.report.tables import frac, group, markdown_table

from common import RESULTS, header, pct

ROOT = Path(__file__).resolve().parent.parent
SHARED = ("data.json", "data.stage.json", "preprocess.safetensors", "experts")


def run_cell(
    config: Path, runs_dir: Path, beta: float, ipc: int, first: Path | None, extra: list[str]
) -> Path:
    name = f"b{beta:g}-ipc{ipc}"
    overrides = [f"data.imbalance_factor={beta}", f"ipc={ipc}", f"name={name}"]
    cfg = load_config(RunConfig, config, [*overrides, f"runs_dir={runs_dir}", *extra])
    if first is not None and not cfg.run_dir.exists():  # reuse this β's data and experts
        cfg.run_dir.mkdir(parents=True)
        for item in SHARED:
            src = first / item
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, cfg.run_dir / item)
    run_pipeline(cfg)
    return cfg.run_dir


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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # stage reuse/compute lines

    extra = [f"methods=[{', '.join(args.methods)}]"] if args.methods else []
    cells: dict[tuple[float, int], Path] = {}
    for beta in args.betas:
        first = None
        for ipc in args.ipcs:
            cells[beta, ipc] = run_cell(args.config, args.runs_dir, beta, ipc, first, extra)
            first = first or cells[beta, ipc]

    lines = [
        header("Every method on Fashion-MNIST-LT (CPU science profile)"),
        "",
        f"Profile `{args.config.relative_to(ROOT)}`: ConvNet width 32; "
        "MTT, DATM and LTDD match the same representation experts (LTDD adds classifier "
        "experts retrained from them); every set is evaluated by training fresh networks "
        "(3 seeds, 300 epochs, DSA) and testing once at the end. Accuracy in %, mean ± std "
        "(ddof 0) over seeds. Tail = classes 6-9.",
        "",
    ]
    for (beta, ipc), run_dir in cells.items():
        run = load_run(run_dir)
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
        lines += [
            f"## β = {beta:g}, IPC {ipc}",
            "",
            markdown_table(
                [
                    "method",
                    "balanced acc.",
                    "tail acc.",
                    "LT-test acc.",
                    "LT macro-F1",
                    "HLR (pp)",
                    "IOR (pp)",
                    "LRS",
                    "set wall s",
                ],
                rows,
            ),
            "",
        ]
    for ipc in args.ipcs:
        runs = [cells[b, ipc] for b in args.betas]
        report = build_report(runs, RESULTS / f"{args.name}-report-ipc{ipc}")
        lines.append(f"Report across β at IPC {ipc}: `{report.relative_to(ROOT)}`.")
    write_text(RESULTS / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
