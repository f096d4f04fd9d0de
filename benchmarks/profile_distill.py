"""Where one LTDD outer iteration spends its time: torch.profiler over `bench_speed`'s
`distill_iteration` (phase 1 DAM + phase 2 ED, one inner step per phase, random Fashion-MNIST-LT
shaped inputs), per setting group and gradient mode, one torch thread.

Each profiled call runs three outer iterations (bench_speed's warm-up and two timed ones) after
one unprofiled warm-up call; operator times are the profiler's self times summed over the three,
as shares of the total, so they stay comparable on a loaded machine (where the absolute times
also count waiting for a core). `cpu_s_per_inner_step` are the process CPU seconds per phase.

    .venv/bin/python benchmarks/profile_distill.py [--groups cpu official] [--top 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_speed  # noqa: E402

from common import RESULTS, command  # noqa: E402

ITERATIONS = 3  # bench_speed.distill_iteration's warm-up + two timed iterations


def profile(group: str, mode: str, top: int) -> dict:
    """The top operators of one (group, mode) and the CPU seconds of each phase."""
    settings = bench_speed.GROUPS[group]
    bench_speed.INNER["steps"] = 1
    bench_speed.distill_iteration(settings, mode)  # warm-up: oneDNN set-up, allocator
    with torch.profiler.profile() as prof:
        result = bench_speed.distill_iteration(settings, mode)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    phases = [statistics.median(p) for p in result["phase_cpu_samples"]]
    return {
        "stage": "distill_iteration",
        "settings": f"{group}: width {settings['width']}, {mode}",
        "seconds": round(sum(phases) * settings["syn_steps"], 3),
        "unit": "outer iteration (CPU seconds, scaled from 1 + 1 inner steps)",
        "peak_rss_mb": round(bench_speed._peak_mb(), 1),
        "cpu_s_per_inner_step": {"phase1": round(phases[0], 3), "phase2": round(phases[1], 3)},
        "ops": [
            {
                "name": e.key,
                "share": round(e.self_cpu_time_total / total, 4),
                "calls_per_iteration": round(e.count / ITERATIONS, 1),
            }
            for e in events[:top]
        ],
        "ops_per_iteration": round(sum(e.count for e in events) / ITERATIONS),
    }


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Where an LTDD outer iteration spends its time (torch.profiler, one thread)",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}",
        f"- date: {result['date']}; load at start {result['load']}",
        "",
        "Shares of the profiler's self time over three outer iterations of one inner step per",
        "phase; CPU seconds per inner step from the process clock (phase 1 DAM: every parameter",
        "free, backbone matched; phase 2 ED: classifier only).",
        "",
    ]
    for row in result["rows"]:
        steps = row["cpu_s_per_inner_step"]
        lines += [
            f"## {row['settings']}",
            "",
            f"CPU s per inner step: phase 1 {steps['phase1']:.3f}, phase 2 {steps['phase2']:.3f};"
            f" {row['ops_per_iteration']} operator calls per outer iteration.",
            "",
            "| operator | share | calls per iteration |",
            "|---|---:|---:|",
            *[
                f"| {op['name']} | {100 * op['share']:.1f} % | {op['calls_per_iteration']:g} |"
                for op in row["ops"]
            ],
            "",
        ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["cpu", "official"])
    parser.add_argument("--modes", nargs="+", default=["tesla", "tesla_fd"])
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", default="profile-distill")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_speed._as_the_cli_does()
    result = {
        "command": command(),
        "machine": bench_speed.cpu_description(1),
        "date": time.strftime("%Y-%m-%d"),
        "load": bench_speed._loadavg(),
        "rows": [profile(g, m, args.top) for g in args.groups for m in args.modes],
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, RESULTS / f"{args.out}.md")
    print((RESULTS / f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
