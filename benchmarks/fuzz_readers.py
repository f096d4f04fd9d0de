"""A long fuzzing run of every file reader (tests/test_fuzz_readers.py with more examples).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_readers.py --examples 2000

Each reader gets `--examples` random inputs (Hypothesis, not derandomised); a reader that raises
anything but a one-line UserError is a crash. Writes benchmarks/results/fuzz.md and fuzz.json:
inputs tried, crashes (want 0) and seconds per reader. Results are written after each reader.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import traceback
from pathlib import Path

from common import RESULTS, header, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="inputs per reader")
    parser.add_argument("--out", default="fuzz", help="results name under benchmarks/results")
    args = parser.parse_args()
    os.environ["LTDD_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ.setdefault("LTDD_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "ltdd-fuzz"))
    tests = Path(__file__).resolve().parents[1] / "tests"
    sys.path.insert(0, str(tests))
    import torch

    torch.set_num_threads(1)
    import test_fuzz_readers as fuzz

    targets = [getattr(fuzz, name) for name in dir(fuzz) if name.startswith("test_fuzz_")]
    rows = []
    for target in sorted(targets, key=lambda t: t.__name__):
        before = dict(fuzz.TRIED)
        start = time.perf_counter()
        crash = None
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - a crash is what this run looks for
            crash = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:500]
        seconds = time.perf_counter() - start
        readers = {k: v - before.get(k, 0) for k, v in fuzz.TRIED.items() if v != before.get(k)}
        for reader, tried in readers.items() or {target.__name__: 0}.items():
            rows.append(
                {
                    "reader": reader,
                    "test": target.__name__,
                    "inputs_tried": tried,
                    "crashes": 0 if crash is None else 1,
                    "crash": crash,
                    "seconds": round(seconds, 1),
                }
            )
        write(args, rows)
        print(f"{target.__name__}: {readers} crash={crash is not None} {seconds:.0f}s", flush=True)


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    command = f".venv/bin/python benchmarks/fuzz_readers.py --examples {args.examples}"
    result = {
        "command": command,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "examples_per_reader": args.examples,
        "total_inputs": sum(r["inputs_tried"] for r in rows),
        "total_crashes": sum(r["crashes"] for r in rows),
        "rows": rows,
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        header("Fuzzing the file readers (Hypothesis)"),
        "Every reader got random variants of a valid file of its format (1-4 byte edits biased to "
        "the header, random JSON/YAML structure, or random bytes). A crash is any exception "
        "other than a one-line `UserError` (which the CLI prints as `ltdd: error: ...`, exit 2). "
        "The same targets run in `make test` with 25 derandomised examples each.\n",
        "| reader | test | inputs tried | crashes | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['reader']} | `{r['test']}` | {r['inputs_tried']} | {r['crashes']} | "
            f"{r['seconds']} |"
        )
    lines.append(f"\nTotal: {result['total_inputs']} inputs, {result['total_crashes']} crashes.")
    for r in rows:
        if r["crash"]:
            lines.append(f"\n`{r['test']}` crashed: `{r['crash']}`")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
