"""Timed end-to-end runs of the CPU science profile: another checkout against this one, from an
empty run directory each, one after the other on the same machine (issue 10: "at least 3x
faster end to end ... with the same results within seed spread").

Each variant is `LABEL=SRC[:key=value,...]`: `ltdd run --config CONFIG name=LABEL` with
PYTHONPATH SRC, CONFIG read from that checkout (SRC/..; the profile as it stood there) and the
overrides, in a fresh process with the torch default thread count (the
machine's cores). Measured: wall seconds, CPU seconds (user + system of the run and every
worker it started), the largest peak RSS of any one of those processes, each stage's wall time
from the run's `timings.json`, and each method's balanced test accuracy (so the results can be
compared across variants). `ratio_base` = the first variant's wall seconds / this variant's.

    .venv/bin/python benchmarks/bench_end_to_end.py --out end-to-end \
        --variant base=../base2742/src --variant jobs2=src:jobs=2,evaluate.initial_sets=false
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_speed import _loadavg, cpu_description  # noqa: E402

from common import RESULTS, header, pct, provenance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    """`LABEL=SRC[:k=v,k=v]` -> (label, src, overrides)."""
    label, _, rest = text.partition("=")
    src, _, overrides = rest.partition(":")
    if not label or not src:
        raise SystemExit(f"--variant wants LABEL=SRC[:key=value,...], got {text!r}")
    return label, src, [o for o in overrides.split(",") if o]


# Runs the command and writes [CPU seconds, peak RSS KiB] of it and everything it waited for.
MEASURE = (
    "import json, resource, subprocess, sys; subprocess.run(sys.argv[2:], check=True); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(sys.argv[1], 'w').write(json.dumps([u.ru_utime + u.ru_stime, u.ru_maxrss]))"
)


def time_run(label: str, src: str, overrides: list[str], config: Path, work: Path) -> dict:
    """One `ltdd run` from an empty run directory, timed."""
    run_dir = work / label
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    env.pop("OMP_NUM_THREADS", None)
    checkout = Path(src).resolve().parent
    cmd = [sys.executable, "-m", "ltdd", "run", "--config", str(checkout / config)]
    cmd += [f"name={label}", f"runs_dir={work}", *overrides]
    usage = work / f"{label}.usage.json"
    load = _loadavg()
    t0 = time.perf_counter()
    with open(work / f"{label}.log", "w") as log:
        subprocess.run(
            [sys.executable, "-c", MEASURE, str(usage), *cmd],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    wall = time.perf_counter() - t0
    cpu, peak_kib = json.loads(usage.read_text())
    timings = json.loads((run_dir / "timings.json").read_text())
    accuracy = {}
    for path in sorted((run_dir / "eval").glob("*.json")):
        if path.name.endswith(".stage.json"):
            continue
        runs = json.loads(path.read_text())["balanced"]["accuracy"]
        accuracy[path.stem] = {k: runs[k] for k in ("mean", "std", "runs")}
    return {
        "stage": "end_to_end",
        "settings": f"{label}: {config.name} {' '.join(overrides)} (PYTHONPATH {src})".strip(),
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "unit": "run (every stage, from an empty run directory)",
        "peak_rss_mb": round(peak_kib / 1024),
        "load_at_start": load,
        "stage_wall_s": {k: round(v.get("wall_s", 0.0), 1) for k, v in timings.items()},
        "balanced_accuracy": accuracy,
        "label": label,
    }


def write(rows: list[dict], out: str, threads: int) -> None:
    base = rows[0]
    for row in rows:
        row["ratio_base"] = round(base["seconds"] / row["seconds"], 2)
        row["ratio_base_cpu"] = round(base["cpu_seconds"] / row["cpu_seconds"], 2)
    machine = cpu_description(threads)
    fields = {**provenance(machine), "rows": rows}
    (RESULTS / f"{out}.json").write_text(json.dumps(fields, indent=1) + "\n")
    title = "End to end: the CPU science profile, timed, one checkout after the other"
    lines = [
        header(title, machine),
        "Wall and CPU seconds (user + system, the run and its workers) of one `ltdd run` from an",
        "empty run directory; ratio_base = first row / this row. Peak RSS: the largest of any one",
        "process. Accuracy: balanced test accuracy in %, mean ± std over the evaluation seeds.",
        "",
        "| variant | wall s | CPU s | ratio_base | ratio_base cpu | peak RSS MB | load at start |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['settings']} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} | "
            f"{r['ratio_base']:.2f} | {r['ratio_base_cpu']:.2f} | {r['peak_rss_mb']} | "
            f"{r['load_at_start']} |"
        )
    stages = list(dict.fromkeys(s for r in rows for s in r["stage_wall_s"]))
    lines += ["", "Wall seconds per stage (in a worker when the run had `jobs` > 1):", ""]
    lines += ["| stage | " + " | ".join(r["label"] for r in rows) + " |"]
    lines += ["|---|" + "---:|" * len(rows)]
    for s in stages:
        cells = [f"{r['stage_wall_s'][s]:.0f}" if s in r["stage_wall_s"] else "" for r in rows]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    methods = list(dict.fromkeys(m for r in rows for m in r["balanced_accuracy"]))
    lines += ["", "Balanced test accuracy (%):", ""]
    lines += ["| method | " + " | ".join(r["label"] for r in rows) + " |"]
    lines += ["|---|" + "---|" * len(rows)]
    for m in methods:
        accuracies = [r["balanced_accuracy"].get(m) for r in rows]
        cells = [pct(acc) if acc else "" for acc in accuracies]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    (RESULTS / f"{out}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True, metavar="LABEL=SRC[:k=v,..]")
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("configs/run/fmnist-lt.yaml"),
        help="the profile, relative to each checkout's root",
    )
    parser.add_argument("--work", type=Path, default=Path("runs/end-to-end"))
    parser.add_argument("--out", default="end-to-end")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, src, overrides in variants:
        print(f"{label}: running", flush=True)
        rows.append(time_run(label, src, overrides, args.config, work))
        print(f"{label}: {rows[-1]['seconds']:.0f} s wall, {rows[-1]['cpu_seconds']:.0f} s CPU")
        write(rows, args.out, os.cpu_count() or 1)  # partial results after every variant


if __name__ == "__main__":
    main()
