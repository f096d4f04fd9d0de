"""The evaluation-side costs of the CPU science profile besides training networks, this checkout
against 2742c7a back to back, and an ESTIMATE of the profile's end-to-end CPU time from stage
counts x per-unit costs (issue 10: "at least 3x faster end to end").

Measured (CPU seconds of a fresh one-thread process per measurement, rounds alternating the two
checkouts; random tensors of Fashion-MNIST-LT's shapes, beta 100: 14,886 training images, a
balanced test set of 10,000 and a long-tailed one of 2,480):

- `test_pass`: `predict` of a width-32 ConvNet on both test sets (one evaluation network's
  reports on test profile `both`);
- `features`: `extract_features` of a width-32 expert on the training set (herding, k-center);
- `herding`, `kcenter`: the per-class selection of IPC 10 on those (N, 512) features.

The estimate reads the per-unit CPU seconds and ratios of `speed.json` (experts, distillation,
one evaluation network) and this script's rows, and counts the units of one run of
`configs/run/fmnist-lt.yaml` (beta 100, IPC 10, six methods, DD-Ranking on). It is arithmetic,
not a timed run: the note in the markdown says what each count assumes.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_eval_side.py \
        --base-src ../base2742/src --rounds 3 --out eval-side
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_speed import _as_the_cli_does, _loadavg, _peak_mb, cpu_description  # noqa: E402

from common import RESULTS, command  # noqa: E402

SHAPE, CLASSES, IPC, WIDTH = (1, 28, 28), 10, 10, 32
TRAIN_COUNTS = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
TEST_BALANCED, TEST_LT = 10000, 2480


def _model():
    from ltdd.models import create_model

    return create_model("convnet", CLASSES, SHAPE, seed=0, width=WIDTH).eval()


def _labels() -> torch.Tensor:
    return torch.arange(CLASSES).repeat_interleave(torch.tensor(TRAIN_COUNTS))


def test_pass() -> float:
    from ltdd.evaluate.trainer import predict

    model, g = _model(), torch.Generator().manual_seed(0)
    sets = [torch.randn(n, *SHAPE, generator=g) for n in (TEST_BALANCED, TEST_LT)]
    for x in sets:  # warm-up
        predict(model, x[:1000])
    tick = time.process_time()
    for x in sets:
        predict(model, x)
    return time.process_time() - tick


def features() -> float:
    from ltdd.select import extract_features

    model, g = _model(), torch.Generator().manual_seed(0)
    images = torch.randn(sum(TRAIN_COUNTS), *SHAPE, generator=g)
    extract_features(model, images[:512])
    tick = time.process_time()
    extract_features(model, images)
    return time.process_time() - tick


def _selection(name: str) -> float:
    from ltdd.select import select_herding, select_kcenter

    g = torch.Generator().manual_seed(0)
    feats = torch.relu(torch.randn(sum(TRAIN_COUNTS), WIDTH * 16, generator=g))
    labels = _labels().numpy()
    tick = time.process_time()
    if name == "herding":
        select_herding(feats, labels, CLASSES, IPC)
    else:
        select_kcenter(feats, labels, CLASSES, IPC, 0)
    return time.process_time() - tick


STAGES = {
    "test_pass": (test_pass, "evaluation network (balanced + long-tailed test sets)"),
    "features": (features, "feature extraction (14,886 images)"),
    "herding": (lambda: _selection("herding"), "selection of IPC 10"),
    "kcenter": (lambda: _selection("kcenter"), "selection of IPC 10"),
}


def run_one(stage: str, src: str) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--one", stage],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["killed"])[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _speed_rows() -> dict[tuple[str, str], dict]:
    rows = json.loads((RESULTS / "speed.json").read_text())["rows"]
    return {(r["stage"], r["settings"]): r for r in rows}


def estimate(rows: list[dict]) -> dict:
    """End-to-end CPU seconds of one fmnist-lt.yaml run, at 2742c7a and now: counts x units."""
    speed = _speed_rows()
    mine = {r["stage"]: r for r in rows}

    def unit(stage: str, settings: str) -> tuple[float, float]:
        row = speed[(stage, settings)]
        new = row.get("seconds_cpu", row["seconds"])
        ratio = row.get("ratio_base_cpu", row["ratio_base"])
        return new * ratio, new

    rep = unit("representation_epoch", "cpu: width 32")
    cls = unit("classifier_epoch", "cpu: width 32")
    dist = unit("distill_iteration", "cpu: width 32, tesla")
    net = unit("evaluate_seed", "cpu: width 32")
    per_image = tuple(v / (301 * CLASSES * IPC) for v in net)  # one training image-step
    test = (mine["test_pass"]["base_seconds"], mine["test_pass"]["seconds"])
    feat = (mine["features"]["base_seconds"], mine["features"]["seconds"])
    sel = tuple(mine["herding"][k] + mine["kcenter"][k] for k in ("base_seconds", "seconds"))
    # Networks on ~100 images. At 2742c7a, per set: own 3 (both test sets) + DD-Ranking's
    # hard-label 3 + random-subset 3 (balanced test set only), and 3 on each of the three
    # iteration-0 sets (balanced): 6 x 9 + 3 x 3 = 63. Now the hard-label runs of the three
    # real-image sets are their own runs, and their random-subset runs are trained once for
    # the three, the first of them being random's own seed 0: 63 - 9 - 6 - 1 = 47.
    own, others = (18, 18), (45, 29)
    balanced_share = TEST_BALANCED / (TEST_BALANCED + TEST_LT)
    # full-data bound: 3 seeds x (5 + 1) passes of 14,886 images (batch 256) by the same
    # evaluation trainer, at the per-image-step cost of the IPC-10 network.
    full_steps = 3 * 6 * sum(TRAIN_COUNTS)
    stages = {
        "representation experts (3 x 8 epochs)": tuple(24 * v for v in rep),
        "classifier experts (3 x 2 epochs)": tuple(6 * v for v in cls),
        "distillation (MTT, DATM, LTDD: 60 iterations each, LTDD's two-phase iteration for each)": (
            tuple(180 * v for v in dist)
        ),
        "evaluation networks, training": tuple((own[i] + others[i]) * net[i] for i in range(2)),
        "evaluation networks, test passes": tuple(
            (own[i] + balanced_share * others[i]) * test[i] for i in range(2)
        ),
        "full-data bound (3 seeds x 6 passes of the training set)": tuple(
            full_steps * v for v in per_image
        ),
        "herding + k-center (features once each, selection)": tuple(
            2 * feat[i] + sel[i] for i in range(2)
        ),
    }
    networks = (own[0] + others[0], own[1] + others[1])
    total = tuple(sum(v[i] for v in stages.values()) for i in (0, 1))
    return {
        "kind": "ESTIMATE from counts x measured per-unit CPU seconds, not a timed run",
        "stages": {
            k: {
                "base_cpu_s": round(b, 1),
                "cpu_s": round(n, 1),
                "ratio": round(b / n, 2),
            }
            for k, (b, n) in stages.items()
        },
        "total": {
            "base_cpu_s": round(total[0], 1),
            "cpu_s": round(total[1], 1),
            "ratio": round(total[0] / total[1], 2),
        },
        "networks": {"base": networks[0], "now": networks[1]},
    }


def write(result: dict, out: str) -> None:
    (RESULTS / f"{out}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Evaluation-side costs (besides training) and an end-to-end estimate, vs 2742c7a",
        "",
        f"- command: `{result['command']}`",
        *([f"- report: `{result['report_command']}`"] if result.get("report_command") else []),
        f"- machine: {result['machine']}",
        f"- date: {result['date']}; 1-min load: {result['load']}",
        "",
        "CPU seconds (process_time) of a fresh one-thread process per measurement; medians over",
        "rounds; ratio_base = 2742c7a / this checkout, median of the per-round ratios.",
        "",
        "| stage | settings | cpu s / unit | unit | base cpu s | ratio_base | peak RSS MB |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['stage']} | {r['settings']} | {r['seconds']:.3f} | {r['unit']} | "
            f"{r.get('base_seconds', float('nan')):.3f} | {r.get('ratio_base', float('nan')):.2f}"
            f" | {r['peak_rss_mb']:.0f} |"
        )
    est = result.get("estimate")
    if est:
        lines += [
            "",
            f"## End-to-end: {est['kind']}",
            "",
            "configs/run/fmnist-lt.yaml, one beta, IPC 10, six methods, DD-Ranking on; per-unit",
            "CPU seconds and ratios of benchmarks/results/speed.json (width-32 rows) and the rows",
            "above; counts in the JSON and in bench_eval_side.py's `estimate`. Evaluation",
            f"networks: {est['networks']['base']} at 2742c7a, {est['networks']['now']} now.",
            "",
            "| stage | 2742c7a cpu s | now cpu s | ratio | share of now |",
            "|---|---:|---:|---:|---:|",
        ]
        now = est["total"]["cpu_s"]
        for name, s in [*est["stages"].items(), ("total", est["total"])]:
            lines.append(
                f"| {name} | {s['base_cpu_s']:.0f} | {s['cpu_s']:.0f} | {s['ratio']:.2f} | "
                f"{100 * s['cpu_s'] / now:.0f} % |"
            )
    (RESULTS / f"{out}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-src", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="eval-side")
    parser.add_argument(
        "--report-only", action="store_true", help="recompute the estimate and OUT.md from OUT.json"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((RESULTS / f"{args.out}.json").read_text())
        result["estimate"] = estimate(result["rows"])
        result["report_command"] = command()
        write(result, args.out)
        print((RESULTS / f"{args.out}.md").read_text())
        return
    if args.one:
        torch.set_num_threads(1)
        _as_the_cli_does()
        seconds = STAGES[args.one][0]()
        print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_mb(), "load": _loadavg()}))
        return
    if args.base_src is None:
        parser.error("--base-src is required unless --report-only")
    new_src = str(Path(__file__).resolve().parent.parent / "src")
    samples: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for stage in STAGES:
            for code, src in (("base", str(args.base_src.resolve())), ("new", new_src)):
                samples.setdefault((stage, code), []).append(run_one(stage, src))
                print(stage, code, samples[(stage, code)][-1], flush=True)
    rows = []
    for stage, (_, unit) in STAGES.items():
        new = [r for r in samples[(stage, "new")] if "error" not in r]
        base = [r for r in samples[(stage, "base")] if "error" not in r]
        row = {
            "stage": stage,
            "settings": f"cpu: width {WIDTH}, Fashion-MNIST-LT beta 100 shapes",
            "seconds": round(statistics.median(r["seconds"] for r in new), 4),
            "seconds_cpu": round(statistics.median(r["seconds"] for r in new), 4),
            "unit": unit,
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in new), 1),
            "rounds": len(new),
        }
        if base:
            row["base_seconds"] = round(statistics.median(r["seconds"] for r in base), 4)
            ratios = [b["seconds"] / n["seconds"] for b, n in zip(base, new, strict=False)]
            row["ratio_base"] = round(statistics.median(ratios), 3)
            row["ratio_base_per_round"] = [round(x, 3) for x in ratios]
        rows.append(row)
    loads = [float(r["load"].split()[0]) for rs in samples.values() for r in rs if "load" in r]
    result = {
        "command": command(),
        "machine": cpu_description(1),
        "date": time.strftime("%Y-%m-%d"),
        "load": f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a",
        "clock": "CPU seconds of the measuring process (time.process_time)",
        "rows": rows,
    }
    result["estimate"] = estimate(rows)
    write(result, args.out)
    print((RESULTS / f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
