"""`bench_speed.py` with every stage timed in CPU seconds of its process instead of wall seconds.

On a machine shared with other jobs, wall time measures the neighbours as much as the code: at a
load of 10 on 2 cores the same run of one process varied 3-7x between repetitions. The CPU time
of a one-thread process is what the same work costs on a quiet core (the allocator's page
faults, counted as system time, included). Same stages, arguments and outputs as bench_speed.py
(run it with `--threads 1`: with more threads, CPU seconds add up over threads).

    .venv/bin/python benchmarks/bench_speed_cpu.py --base-src ../base2742/src --threads 1 \
        --stages anchor_256 anchor_100 classifier_epoch evaluate_seed --out speed-cpu
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_speed  # noqa: E402

HERE = str(Path(__file__).resolve())


def main() -> None:
    if "--one" in sys.argv:
        time.perf_counter = time.process_time  # the workers' only clock: `_timed`
        bench_speed.main()
        return
    bench_speed.__file__ = HERE  # workers are started as this script
    bench_speed.main()
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "speed"
    json_path = bench_speed.RESULTS / f"{out}.json"
    result = json.loads(json_path.read_text())
    result["command"] = " ".join(
        [".venv/bin/python", "benchmarks/bench_speed_cpu.py", *sys.argv[1:]]
    )
    result["clock"] = "CPU seconds of the measuring process (time.process_time), not wall"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md = bench_speed.RESULTS / f"{out}.md"
    text = md.read_text().replace("benchmarks/bench_speed.py", "benchmarks/bench_speed_cpu.py")
    text = text.replace(
        "Seconds per unit are medians",
        "CLOCK: CPU seconds of each one-thread measuring process (time.process_time), not wall.\n"
        "Seconds per unit are medians",
    )
    md.write_text(text)


if __name__ == "__main__":
    main()
