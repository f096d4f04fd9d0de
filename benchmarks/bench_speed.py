"""Seconds per unit of every stage, this checkout against a baseline checkout (commit 2742c7a),
back to back, with a raw-speed anchor and the ratio to the official code's figures.

Stages (rows of `benchmarks/results/speed.json`): `representation_epoch`, `classifier_epoch`,
`distill_iteration` (LTDD: phase 1 DAM + phase 2 ED, TESLA; `tesla_fd` = TESLA with the
finite-difference pass 2), `evaluate_seed` (one evaluation network trained on IPC 10), and the
`anchor` (a bare forward/backward/SGD loop of the same network, same batch, no augmentation).
Two setting groups: `official` (ConvNet width 128, GSAM experts, 20 + 20 inner steps, 1000
evaluation epochs; the issue's table) and `cpu` (configs/run/fmnist-lt.yaml: width 32, no GSAM,
10 + 10 inner steps, 300 evaluation epochs).

Each measurement runs in a fresh process (`--one`) with PYTHONPATH set to the checkout's `src`,
so both checkouts are timed by the same script; rounds alternate baseline and this checkout.
Every stage is timed on a fraction of its unit and scaled (cost is linear in the steps):
`measured` in each row says how much. Inputs are random tensors of Fashion-MNIST-LT's shape
(1x28x28, 10 classes; the cost does not depend on the values). ratio_official =
(official / 2742c7a, from the issue's table) x (2742c7a / this checkout, measured here).

    .venv/bin/python benchmarks/bench_speed.py --base-src ../base10/src [--rounds 2]
        [--threads 1] [--groups official cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS  # noqa: E402

SHAPE, CLASSES, IPC = (1, 28, 28), 10, 10
TRAIN_IMAGES = 14886  # Fashion-MNIST-LT, beta 100
CLASS_AWARE_DRAWS = 60000  # max_c n_c x C
# Seconds at 2742c7a and for the official code, issue 10's table (sums of its two epochs).
ISSUE = {
    "representation_epoch": {"official": 199.6 + 173.5, "base": 222.8 + 235.3},
    "classifier_epoch": {"official": 247.7 + 151.5, "base": 422.6 + 412.9},
    "distill_iteration": {"official": 73.4, "base": 47.0},
}
GROUPS = {
    "official": {"width": 128, "gsam": True, "syn_steps": 20, "eval_epochs": 1000},
    "cpu": {"width": 32, "gsam": False, "syn_steps": 10, "eval_epochs": 300},
}


def _loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PAIRED: dict = {"step": None, "samples": []}
"""With --inline-anchor: an anchor step timed after each timed repetition, in the same process."""


def _timed(fn, warmup: int, reps: int) -> list[float]:
    pair = PAIRED["step"]
    for _ in range(warmup):
        fn()
    if pair is not None:
        pair()  # warm-up
    out = []
    for _ in range(reps):
        tick = time.perf_counter()
        fn()
        out.append(time.perf_counter() - tick)
        if pair is not None:
            tick = time.perf_counter()
            pair()
            PAIRED["samples"].append(time.perf_counter() - tick)
    return out


def _anchor_step(width: int, batch: int):
    """A bare forward/backward/SGD step of the ConvNet on `batch` random images."""
    import torch.nn.functional as F

    from ltdd.models import create_model

    g = torch.Generator().manual_seed(0)
    model = create_model("convnet", CLASSES, SHAPE, seed=0, width=width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, *SHAPE, generator=g), torch.randint(0, CLASSES, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def anchor(group: dict, batch: int) -> dict:
    """Plain training step of the same network: forward, backward, SGD; no augmentation."""
    times = _timed(_anchor_step(group["width"], batch), 1, 2)
    return {"samples": times, "scale": 1.0, "measured": "2 steps", "images": batch}


def _expert_epoch(group: dict, kind: str, steps: int, epoch_images: int) -> dict:
    from ltdd.data.augment import dsa
    from ltdd.experts.config import ExpertsConfig
    from ltdd.experts.trainer import Engine

    cfg = ExpertsConfig(
        kind=kind, num_experts=1, width=group["width"], gsam=group["gsam"], device="cpu"
    ).resolved()
    engine = Engine(cfg, CLASSES, SHAPE, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    w0 = engine.init_params(1)[None]
    frozen, w = w0[:, : engine.start], w0[:, engine.start :]
    buf, tau = torch.zeros_like(w), torch.full((1,), float("nan"))
    x = torch.randn(cfg.batch_size, *SHAPE, generator=g)
    y = torch.randint(0, CLASSES, (1, cfg.batch_size), generator=g)

    def step() -> None:
        engine.step(w, frozen, buf, tau, dsa(x, g)[None], y)

    times = _timed(step, 1, steps)
    per_epoch = epoch_images / cfg.batch_size
    return {
        "samples": times,
        "scale": per_epoch,
        "measured": f"{steps} steps of {cfg.batch_size}, x {per_epoch:.1f} steps per epoch",
        "images": epoch_images,
    }


def representation_epoch(group: dict) -> dict:
    return _expert_epoch(group, "representation", 1 if group["gsam"] else 3, TRAIN_IMAGES)


def classifier_epoch(group: dict) -> dict:
    return _expert_epoch(group, "classifier", 4, CLASS_AWARE_DRAWS)


def distill_iteration(group: dict, mode: str) -> dict:
    """LTDD's two phases (DAM: S = backbone, U = all; ED: S = U = classifier), k inner steps
    each, scaled to `syn_steps` (TESLA's cost is linear in the inner steps)."""
    from ltdd.data.augment import DSAConfig, apply_dsa, sample_dsa
    from ltdd.distill.losses import inner_loss
    from ltdd.distill.matching import GRADIENT_MODES, InnerStep
    from ltdd.distill.student import Student
    from ltdd.models import ParamLayout, create_model

    g = torch.Generator().manual_seed(0)
    model = create_model("convnet", CLASSES, SHAPE, seed=0, width=group["width"])
    layout = ParamLayout.from_module(model)
    student = Student(model, layout)
    n = CLASSES * IPC
    images = torch.randn((n, *SHAPE), generator=g)
    labels = torch.randn((n, CLASSES), generator=g)
    lr = torch.tensor(0.01)
    start = layout.flatten(model)
    cs = layout.classifier_start
    move = 0.01 * torch.randn(layout.num_params, generator=g)
    counts = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    phases = [
        (inner_loss("prior_weighted_soft_ce", counts), start + move, layout.mask("backbone"), 0),
        (inner_loss("soft_ce", counts), start + move * layout.mask("classifier"), None, cs),
    ]
    fn = GRADIENT_MODES.get(mode)
    k = 1

    def iteration() -> None:
        for loss_fn, target, match, free_start in phases:
            match = layout.mask("classifier") if match is None else match
            steps = []
            for _ in range(k):
                draw = sample_dsa(n, SHAPE, g, DSAConfig())
                steps.append(
                    InnerStep(torch.randperm(n, generator=g), lambda x, d=draw: apply_dsa(x, d))
                )
            fn(
                student.forward,
                loss_fn,
                images,
                labels,
                lr,
                start,
                target,
                steps,
                match,
                free_start,
            )

    times = _timed(iteration, 1, 2)
    scale = group["syn_steps"] / k
    return {
        "samples": times,
        "scale": scale,
        "measured": f"{k} + {k} inner steps of {n}, x {scale:g}",
        "images": 2 * group["syn_steps"] * n,
    }


def evaluate_seed(group: dict) -> dict:
    """One evaluation network on IPC 10 (100 images, soft labels), `epochs` + 1 passes."""
    from ltdd.evaluate.trainer import TrainConfig, train_network

    g = torch.Generator().manual_seed(0)
    images = torch.randn(CLASSES * IPC, *SHAPE, generator=g)
    labels = torch.randn(CLASSES * IPC, CLASSES, generator=g)
    passes = 4
    cfg = TrainConfig(width=group["width"], epochs=passes - 1)

    def run() -> None:
        train_network(images, labels, 0.01, CLASSES, cfg, seed=0, device=torch.device("cpu"))

    times = _timed(run, 1, 1)  # warm-up: the first call pays the one-off oneDNN set-up
    scale = (group["eval_epochs"] + 1) / passes
    return {
        "samples": times,
        "scale": scale,
        "measured": f"{passes} passes of 100 images, x {scale:g}",
        "images": (group["eval_epochs"] + 1) * CLASSES * IPC,
    }


STAGES = {
    "anchor_256": lambda group, variant: anchor(group, 256),
    "anchor_100": lambda group, variant: anchor(group, 100),
    "representation_epoch": lambda group, variant: representation_epoch(group),
    "classifier_epoch": lambda group, variant: classifier_epoch(group),
    "distill_iteration": lambda group, variant: distill_iteration(group, variant),
    "evaluate_seed": lambda group, variant: evaluate_seed(group),
}
STAGE_BATCH = {
    "representation_epoch": 256,
    "classifier_epoch": 256,
    "distill_iteration": 100,
    "evaluate_seed": 100,
}
UNITS = {
    "anchor_256": "step of 256 images",
    "anchor_100": "step of 100 images",
    "representation_epoch": "epoch (14,886 images)",
    "classifier_epoch": "epoch (60,000 class-aware draws)",
    "distill_iteration": "outer iteration",
    "evaluate_seed": "evaluation seed",
}


def plan(groups: list[str], stages: list[str]) -> list[tuple[str, str, str, str]]:
    """(group, stage, variant, code) measurements of one round; `code` is base or new."""
    out = []
    for group in groups:
        for stage in stages:
            variants = ["tesla", "tesla_fd"] if stage == "distill_iteration" else ["-"]
            for variant in variants:
                one = variant == "tesla_fd" or stage.startswith("anchor")  # not in 2742c7a / same
                codes = ["new"] if one else ["base", "new"]
                out += [(group, stage, variant, code) for code in codes]
    return out


def run_one(key: tuple[str, str, str, str], src: str, threads: int, inline: bool) -> dict:
    """One measurement in a fresh process with PYTHONPATH `src`."""
    group, stage, variant, code = key
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--one", group, stage, variant, "--threads", str(threads)]
    cmd += ["--inline-anchor"] if inline and code == "new" else []
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["killed"])[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_description(threads: int) -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln), ""
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []
    )
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (
        f"{model or platform.processor()} ({os.cpu_count()} cores; {' '.join(simd) or 'no AVX2'}); "
        f"torch {torch.__version__}; {threads} torch thread(s) per process"
    )


def _paired_ratios(base: list[dict], new: list[dict]) -> list[float]:
    """base / new per round (the two were timed back to back, under about the same load)."""
    out = []
    for b, n in zip(base, new, strict=False):
        if "error" in b or "error" in n:
            continue
        out.append(statistics.median(b["samples"]) / statistics.median(n["samples"]))
    return out


def summarise(samples: dict, machine_line: str, args: argparse.Namespace, load: list[str]) -> dict:
    rows = []
    med = {}
    for (group, stage, variant, code), results in samples.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            continue
        per_unit = statistics.median(t * r["scale"] for r in ok for t in r["samples"])
        med[group, stage, variant, code] = (per_unit, ok[0], max(r["peak_rss_mb"] for r in ok))
    for (group, stage, variant, code), (seconds, info, peak) in med.items():
        if code != "new" or stage.startswith("anchor"):
            continue
        row = {
            "stage": stage,
            "settings": f"{group}: width {GROUPS[group]['width']}"
            + (f", {variant}" if variant != "-" else ""),
            "seconds": round(seconds, 3),
            "unit": UNITS[stage],
            "peak_rss_mb": round(peak, 1),
            "measured": info["measured"],
        }
        base_key = (group, stage, "tesla" if variant == "tesla_fd" else variant, "base")
        base = med.get(base_key)
        if base is not None:
            paired = _paired_ratios(samples[base_key], samples[group, stage, variant, code])
            row["base_seconds"] = round(base[0], 3)
            row["base_peak_rss_mb"] = round(base[2], 1)
            row["ratio_base"] = round(statistics.median(paired), 3)
            row["ratio_base_per_round"] = [round(r, 3) for r in paired]
            if group == "official" and stage in ISSUE:
                fig = ISSUE[stage]
                row["ratio_official"] = round(fig["official"] / fig["base"] * row["ratio_base"], 3)
        batch = 100 if stage in ("distill_iteration", "evaluate_seed") else 256
        anchor_row = med.get((group, f"anchor_{batch}", "-", "new"))
        if anchor_row is not None:
            per_image_anchor = anchor_row[0] / batch
            row["anchor_seconds_per_image"] = round(per_image_anchor, 6)
            row["ratio_anchor"] = round(seconds / info["images"] / per_image_anchor, 3)
        inline = [
            (statistics.median(r["samples"]) * r["scale"] / r["images"], r["anchor_samples"])
            for r in samples[group, stage, variant, code]
            if "anchor_samples" in r
        ]
        if inline:
            batch = STAGE_BATCH[stage]
            per_image = statistics.median(s for _, a in inline for s in a) / batch
            row["ratio_anchor_same_process"] = round(
                statistics.median(t for t, _ in inline) / per_image, 3
            )
        rows.append(row)
    return {
        "command": " ".join([".venv/bin/python", "benchmarks/bench_speed.py", *sys.argv[1:]]),
        "machine": machine_line,
        "date": time.strftime("%Y-%m-%d"),
        "load": load,
        "rows": rows,
        "anchor": {
            f"{g}/{s}": round(v[0], 3)
            for (g, s, _, c), v in med.items()
            if s.startswith("anchor") and c == "new"
        },
    }


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Stage speed: this checkout vs 2742c7a (back to back), the official code and the anchor",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}",
        f"- date: {result['date']}; machine load (/proc/loadavg): {'; '.join(result['load'])}",
        "",
        "Seconds per unit are medians over all timed repetitions of all rounds, each timed on a",
        "fraction of the unit and scaled (column `measured`). ratio_base = 2742c7a / this",
        "checkout, the median over rounds of the ratio within a round (the two timed back to",
        "back; per round in the JSON), which is steadier than the ratio of the medians when the",
        "load changes between rounds; ratio_official = (official / 2742c7a from issue 10's",
        "table) x ratio_base;",
        "ratio_anchor = (seconds per image-step of the stage) / (seconds per image of the plain",
        "forward/backward/SGD step of the same network and batch). GSAM stages do two forward/",
        "backward passes per image-step, so 2.0 is their floor; the classifier epoch needs one",
        "forward per image (no backward through the backbone). `ratio_anchor same process`",
        "(runs with --inline-anchor) times an anchor step right after each repetition in the",
        "same process, so both see the same load; these runs carry an extra model, so their",
        "peak RSS is not the stage's.",
        "",
        "| stage | settings | s / unit | unit | peak RSS MB | 2742c7a s | ratio_base "
        "| ratio_official | ratio_anchor | ratio_anchor same process | measured |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    nan = float("nan")
    for r in result["rows"]:
        lines.append(
            f"| {r['stage']} | {r['settings']} | {r['seconds']:.2f} | {r['unit']} | "
            f"{r['peak_rss_mb']:.0f} | {r.get('base_seconds', nan):.2f} | "
            f"{r.get('ratio_base', nan):.2f} | {r.get('ratio_official', nan):.2f} | "
            f"{r.get('ratio_anchor', nan):.2f} | {r.get('ratio_anchor_same_process', nan):.2f} | "
            f"{r['measured']} |"
        )
    anchors = ", ".join(f"{k} {v:.3f}" for k, v in result["anchor"].items())
    lines += ["", f"Anchor seconds per step: {anchors}."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-src", type=Path, help="src/ of a checkout of the baseline commit")
    parser.add_argument(
        "--new-src", type=Path, help="src/ to time as this checkout (default: this one's src/)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--out", default="speed", help="results/NAME.md and NAME.json")
    parser.add_argument(
        "--report-only", action="store_true", help="summarise results/NAME.partial.json only"
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        help="with --report-only: results/NAME.partial.json files whose stages replace these",
    )
    parser.add_argument(
        "--inline-anchor",
        action="store_true",
        help="this checkout's workers also time an anchor step after each repetition",
    )
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        torch.set_num_threads(args.threads)
        group, stage, variant = args.one
        if args.inline_anchor and not stage.startswith("anchor"):
            PAIRED["step"] = _anchor_step(GROUPS[group]["width"], STAGE_BATCH[stage])
        result = STAGES[stage](GROUPS[group], variant)
        if PAIRED["samples"]:
            result["anchor_samples"] = PAIRED["samples"]
        print(json.dumps({**result, "peak_rss_mb": _peak_mb(), "loadavg": _loadavg()}))
        return
    new_src = str((args.new_src or Path(__file__).resolve().parent.parent / "src").resolve())
    partial = RESULTS / f"{args.out}.partial.json"
    samples: dict = {}
    if partial.exists():
        for item in json.loads(partial.read_text()):
            samples.setdefault(tuple(item["key"]), []).append(item["result"])
    for name in args.merge if args.report_only else []:
        other: dict = {}
        for item in json.loads((RESULTS / f"{name}.partial.json").read_text()):
            other.setdefault(tuple(item["key"]), []).append(item["result"])
        stages = {key[1] for key in other}
        samples = {k: v for k, v in samples.items() if k[1] not in stages} | other
    load = [] if args.report_only else [f"at start {_loadavg()}"]
    for round_ in range(0 if args.report_only else args.rounds):
        todo = [
            key
            for key in plan(args.groups, args.stages)
            if len(samples.get(key, [])) <= round_ and (key[3] == "new" or args.base_src)
        ]
        for key in todo:
            src = str(args.base_src.resolve()) if key[3] == "base" else new_src
            result = run_one(key, src, args.threads, args.inline_anchor)
            samples.setdefault(key, []).append(result)
            print(round_, key, json.dumps(result)[:160], flush=True)
            flat = [{"key": list(k), "result": r} for k, rs in samples.items() for r in rs]
            partial.write_text(json.dumps(flat))
    if not args.report_only:
        load.append(f"at end {_loadavg()}")
    seen = [float(r["loadavg"].split()[0]) for rs in samples.values() for r in rs if "loadavg" in r]
    if seen:
        load.append(f"1-min load at each measurement: {min(seen):.1f}-{max(seen):.1f}")
    result = summarise(samples, cpu_description(args.threads), args, load)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, RESULTS / f"{args.out}.md")
    print((RESULTS / f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
