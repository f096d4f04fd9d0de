"""Seconds per unit of every stage, this checkout against a baseline checkout (commit 2742c7a),
back to back, with a raw-speed anchor and the ratio to the official code's figures.

Stages (rows of `benchmarks/results/speed.json`): `representation_epoch`, `classifier_epoch`,
`distill_iteration` (LTDD: phase 1 DAM + phase 2 ED, TESLA; `tesla_fd` = TESLA with the
finite-difference pass 2; the `compile` variant of `classifier_epoch` = `compile: true`, the
frozen backbone's forward through torch.compile, its one-off compilation timed apart),
`evaluate_seed` (one evaluation network trained on IPC 10), and the
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


PAIRED: dict = {"step": None, "samples": [], "cpu_samples": []}
"""With --inline-anchor: an anchor step timed after each timed repetition, in the same process."""
CPU_SAMPLES: list[float] = []
"""CPU seconds (process_time) of each timed repetition: on a shared machine the wall time
includes waiting for a core, the CPU time much less so."""


def _timed(fn, warmup: int, reps: int) -> list[float]:
    pair = PAIRED["step"]
    for _ in range(warmup):
        fn()
    if pair is not None:
        pair()  # warm-up
    out = []
    for _ in range(reps):
        tick, cpu = time.perf_counter(), time.process_time()
        fn()
        out.append(time.perf_counter() - tick)
        CPU_SAMPLES.append(time.process_time() - cpu)
        if pair is not None:
            tick, cpu = time.perf_counter(), time.process_time()
            pair()
            PAIRED["samples"].append(time.perf_counter() - tick)
            PAIRED["cpu_samples"].append(time.process_time() - cpu)
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


def _expert_epoch(
    group: dict, kind: str, steps: int, epoch_images: int, options: dict | None = None
) -> dict:
    from ltdd.data.augment import dsa
    from ltdd.experts.config import ExpertsConfig
    from ltdd.experts.trainer import Engine

    cfg = ExpertsConfig(
        kind=kind,
        num_experts=1,
        width=group["width"],
        gsam=group["gsam"],
        device="cpu",
        **(options or {}),
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

    first = {}
    if options:  # the first step pays a one-off set-up (compilation): timed apart
        tick, cpu = time.perf_counter(), time.process_time()
        step()
        first = {"first_step_seconds": time.perf_counter() - tick}
        first["first_step_seconds_cpu"] = time.process_time() - cpu
    times = _timed(step, 1, steps)
    per_epoch = epoch_images / cfg.batch_size
    return {
        "samples": times,
        "scale": per_epoch,
        "measured": f"{steps} steps of {cfg.batch_size}, x {per_epoch:.1f} steps per epoch",
        "images": epoch_images,
        **first,
    }


def representation_epoch(group: dict) -> dict:
    return _expert_epoch(group, "representation", 2 if group["gsam"] else 3, TRAIN_IMAGES)


def classifier_epoch(group: dict, variant: str = "-") -> dict:
    options = {"compile": True} if variant == "compile" else None
    return _expert_epoch(group, "classifier", 4, CLASS_AWARE_DRAWS, options)


INNER: dict = {"steps": 1}
"""Inner steps per phase timed by `distill_iteration` (--inner-steps; the cost is scaled)."""


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
    k = INNER["steps"]
    phase_wall: list[list[float]] = [[] for _ in phases]
    phase_cpu: list[list[float]] = [[] for _ in phases]

    def iteration() -> None:
        for i, (loss_fn, target, match, free_start) in enumerate(phases):
            tick, cpu = time.perf_counter(), time.process_time()
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
            phase_wall[i].append(time.perf_counter() - tick)
            phase_cpu[i].append(time.process_time() - cpu)

    times = _timed(iteration, 1, 2)
    scale = group["syn_steps"] / k
    return {
        "samples": times,
        "scale": scale,
        "measured": f"{k} + {k} inner steps of {n}, x {scale:g}",
        "images": 2 * group["syn_steps"] * n,
        # per phase, the timed repetitions only (the first call is the warm-up)
        "phase_samples": [w[1:] for w in phase_wall],
        "phase_cpu_samples": [c[1:] for c in phase_cpu],
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
    "classifier_epoch": lambda group, variant: classifier_epoch(group, variant),
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


VARIANTS = {"distill_iteration": ["tesla", "tesla_fd"], "classifier_epoch": ["-", "compile"]}
BASE_VARIANT = {"tesla_fd": "tesla", "compile": "-"}
"""Variants that 2742c7a lacks, and the variant of 2742c7a each one is compared with."""


def plan(groups: list[str], stages: list[str]) -> list[tuple[str, str, str, str]]:
    """(group, stage, variant, code) measurements of one round; `code` is base or new."""
    out = []
    for group in groups:
        for stage in stages:
            for variant in VARIANTS.get(stage, ["-"]):
                one = variant in BASE_VARIANT or stage.startswith("anchor")  # not in 2742c7a
                codes = ["new"] if one else ["base", "new"]
                out += [(group, stage, variant, code) for code in codes]
    return out


def _as_the_cli_does() -> None:
    """The process set-up of the `ltdd` command in the checkout being timed (2742c7a has none)."""
    try:
        from ltdd.allocator import keep_freed_memory
    except ImportError:
        return
    keep_freed_memory()


def run_one(
    key: tuple[str, str, str, str], src: str, threads: int, inline: bool, inner_steps: int = 1
) -> dict:
    """One measurement in a fresh process with PYTHONPATH `src`."""
    group, stage, variant, code = key
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--one", group, stage, variant, "--threads", str(threads)]
    cmd += ["--inner-steps", str(inner_steps)]
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


def _paired_ratios(base: list[dict], new: list[dict], key: str = "samples") -> list[float]:
    """base / new per round (the two were timed back to back, under about the same load), from
    wall (`samples`) or CPU (`cpu_samples`) seconds; rounds lacking either are skipped."""
    out = []
    for b, n in zip(base, new, strict=False):
        if b.get(key) and n.get(key):
            out.append(statistics.median(b[key]) / statistics.median(n[key]))
    return out


def _per_unit(results: list[dict], key: str) -> float | None:
    """Median seconds per unit over every timed repetition of every round that has `key`."""
    values = [t * r["scale"] for r in results for t in r.get(key, [])]
    return statistics.median(values) if values else None


def _same_process_anchor(results: list[dict], batch: int, key: str) -> float | None:
    """Stage seconds per image-step / anchor seconds per image, both timed in one process."""
    pairs = [
        (statistics.median(r[key]) * r["scale"] / r["images"], r[f"anchor_{key}"])
        for r in results
        if r.get(key) and r.get(f"anchor_{key}")
    ]
    if not pairs:
        return None
    per_image = statistics.median(s for _, a in pairs for s in a) / batch
    return round(statistics.median(t for t, _ in pairs) / per_image, 3)


def _base_fields(row: dict, stage: str, group: str, base: list[dict], new: list[dict]) -> None:
    """ratio_base (and ratio_official) from wall and from CPU seconds, per round in the JSON."""
    for suffix, key in (("", "samples"), ("_cpu", "cpu_samples")):
        paired = _paired_ratios(base, new, key)
        if not paired:
            continue
        row[f"base_seconds{suffix}"] = round(_per_unit(base, key), 3)
        row[f"ratio_base{suffix}"] = round(statistics.median(paired), 3)
        row[f"ratio_base{suffix}_per_round"] = [round(r, 3) for r in paired]
        if group == "official" and stage in ISSUE:
            fig = ISSUE[stage]
            ratio = fig["official"] / fig["base"] * row[f"ratio_base{suffix}"]
            row[f"ratio_official{suffix}"] = round(ratio, 3)


PHASES_ISSUE = {"official": (37.8, 36.0), "base": (37.7, 9.6)}
"""Issue 10's distillation phases (phase 1 DAM, phase 2 ED), seconds per iteration."""


def _phase_fields(row: dict, base: list[dict], new: list[dict]) -> None:
    """Per-phase ratio_base and ratio_official (wall and CPU) of a distillation row."""
    for suffix, key in (("", "phase_samples"), ("_cpu", "phase_cpu_samples")):
        for i in range(2):
            paired = [
                statistics.median(b[key][i]) / statistics.median(n[key][i])
                for b, n in zip(base, new, strict=False)
                if b.get(key) and n.get(key)
            ]
            if not paired:
                continue
            ratio = statistics.median(paired)
            row[f"phase{i + 1}_ratio_base{suffix}"] = round(ratio, 3)
            official = PHASES_ISSUE["official"][i] / PHASES_ISSUE["base"][i] * ratio
            row[f"phase{i + 1}_ratio_official{suffix}"] = round(official, 3)


def _command() -> str:
    return " ".join([".venv/bin/python", "benchmarks/bench_speed.py", *sys.argv[1:]])


def summarise(samples: dict, machine_line: str, args: argparse.Namespace, load: list[str]) -> dict:
    rows = []
    ok = {k: [r for r in v if "error" not in r] for k, v in samples.items()}
    ok = {k: v for k, v in ok.items() if v}
    for (group, stage, variant, code), results in ok.items():
        if code != "new" or stage.startswith("anchor"):
            continue
        seconds = _per_unit(results, "samples")
        row = {
            "stage": stage,
            "settings": f"{group}: width {GROUPS[group]['width']}"
            + (f", {variant}" if variant != "-" else ""),
            "seconds": round(seconds, 3),
            "unit": UNITS[stage],
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
            "measured": results[0]["measured"],
            "rounds": len(results),
        }
        cpu = _per_unit(results, "cpu_samples")
        if cpu is not None:
            row["seconds_cpu"] = round(cpu, 3)
        for key in ("first_step_seconds", "first_step_seconds_cpu"):
            if all(key in r for r in results):
                row[f"{key}_per_round"] = [round(r[key], 2) for r in results]
        base = ok.get((group, stage, BASE_VARIANT.get(variant, variant), "base"))
        if base is not None:
            row["base_peak_rss_mb"] = round(max(r["peak_rss_mb"] for r in base), 1)
            _base_fields(row, stage, group, base, results)
            if stage == "distill_iteration" and group == "official":
                _phase_fields(row, base, results)
        batch = STAGE_BATCH[stage]
        anchor = ok.get((group, f"anchor_{batch}", "-", "new"))
        if anchor is not None:
            per_image_anchor = _per_unit(anchor, "samples") / batch
            row["anchor_seconds_per_image"] = round(per_image_anchor, 6)
            images = results[0]["images"]
            row["ratio_anchor"] = round(seconds / images / per_image_anchor, 3)
        for suffix, key in (("", "samples"), ("_cpu", "cpu_samples")):
            same = _same_process_anchor(results, batch, key)
            if same is not None:
                row[f"ratio_anchor_same_process{suffix}"] = same
        if "ratio_anchor_same_process" in row:  # same load as the stage: preferred
            row["ratio_anchor"] = row["ratio_anchor_same_process"]
            row["ratio_anchor_timing"] = "same process"
        elif "ratio_anchor" in row:
            row["ratio_anchor_timing"] = "separate processes"
        rows.append(row)
    measured = sorted({r["command"] for rs in ok.values() for r in rs if "command" in r})
    return {
        "command": "; ".join(measured) or _command(),
        "report_command": _command(),
        "note": args.note,
        "machine": machine_line,
        "date": time.strftime("%Y-%m-%d"),
        "load": load,
        "rows": rows,
        "anchor": {
            f"{g}/{s}": round(_per_unit(v, "samples"), 3)
            for (g, s, _, c), v in ok.items()
            if s.startswith("anchor") and c == "new"
        },
    }


def _cell(row: dict, key: str, digits: int = 2) -> str:
    value = row.get(key)
    return "" if value is None else f"{value:.{digits}f}"


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Stage speed: this checkout vs 2742c7a (back to back), the official code and the anchor",
        "",
        *[f"- command: `{c}`" for c in result["command"].split("; ")],
        f"- report: `{result['report_command']}`",
        *([f"- note: {result['note']}"] if result.get("note") else []),
        f"- machine: {result['machine']}",
        f"- date: {result['date']}; machine load (/proc/loadavg): {'; '.join(result['load'])}",
        "",
        "Seconds per unit are medians over all timed repetitions of all rounds, each timed on a",
        "fraction of the unit and scaled (column `measured`), as wall time and as the process's",
        "CPU time (`cpu`; on a shared machine the wall time also counts waiting for a core).",
        "ratio_base = 2742c7a / this checkout, the median over rounds of the ratio within a",
        "round (the two timed back to back in fresh processes; per round in the JSON);",
        "ratio_official = (official / 2742c7a from issue 10's table) x ratio_base. The official",
        "figures are wall times on a quiet machine, where wall = CPU time for one busy thread,",
        "so the CPU-time ratio is the better estimate when the machine is loaded.",
        "ratio_anchor = (seconds per image-step of the stage) / (seconds per image of the plain",
        "forward/backward/SGD step of the same network and batch), with the anchor timed right",
        "after each repetition in the same process (--inline-anchor). GSAM stages do two",
        "forward/backward passes per image-step, so 2.0 is their floor. Runs with an inline",
        "anchor carry an extra model, so their peak RSS is a little above the stage's.",
        "",
        "| stage | settings | s / unit | cpu s / unit | unit | peak RSS MB | rounds "
        "| ratio_base | ratio_base cpu | ratio_official | ratio_official cpu "
        "| ratio_anchor | ratio_anchor cpu | measured |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        anchor = r.get("ratio_anchor_same_process", r.get("ratio_anchor"))
        cells = [
            r["stage"],
            r["settings"],
            _cell(r, "seconds"),
            _cell(r, "seconds_cpu"),
            r["unit"],
            f"{r['peak_rss_mb']:.0f}",
            str(r.get("rounds", "")),
            _cell(r, "ratio_base"),
            _cell(r, "ratio_base_cpu"),
            _cell(r, "ratio_official"),
            _cell(r, "ratio_official_cpu"),
            "" if anchor is None else f"{anchor:.2f}",
            _cell(r, "ratio_anchor_same_process_cpu"),
            r["measured"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per round (base / this checkout, wall; cpu) and per phase of the distillation:",
        "",
    ]
    for r in result["rows"]:
        if "ratio_base_per_round" not in r:
            continue
        wall = ", ".join(f"{x:.2f}" for x in r["ratio_base_per_round"])
        cpu = ", ".join(f"{x:.2f}" for x in r.get("ratio_base_cpu_per_round", []))
        line = f"- {r['stage']} ({r['settings']}): rounds {wall}; cpu {cpu}"
        for i in (1, 2):
            if f"phase{i}_ratio_official" in r:
                line += (
                    f"; phase {i}: ratio_base {r[f'phase{i}_ratio_base']:.2f} "
                    f"(cpu {r.get(f'phase{i}_ratio_base_cpu', float('nan')):.2f}), "
                    f"ratio_official {r[f'phase{i}_ratio_official']:.2f} "
                    f"(cpu {r.get(f'phase{i}_ratio_official_cpu', float('nan')):.2f})"
                )
        if "first_step_seconds_per_round" in r:
            line += "; first step (one-off set-up included), s per round: " + ", ".join(
                f"{x:.1f}" for x in r["first_step_seconds_per_round"]
            )
            if "first_step_seconds_cpu_per_round" in r:
                line += "; cpu " + ", ".join(
                    f"{x:.1f}" for x in r["first_step_seconds_cpu_per_round"]
                )
        lines.append(line)
    if result["anchor"]:
        anchors = ", ".join(f"{k} {v:.3f}" for k, v in result["anchor"].items())
        lines += ["", f"Anchor seconds per step (separate processes): {anchors}."]
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
    parser.add_argument(
        "--inner-steps",
        type=int,
        default=1,
        help="inner steps per phase timed in a distillation iteration (scaled to the setting's)",
    )
    parser.add_argument(
        "--note", default="", help="a line for the report: what the timed checkouts were"
    )
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        torch.set_num_threads(args.threads)
        _as_the_cli_does()
        group, stage, variant = args.one
        INNER["steps"] = args.inner_steps
        if args.inline_anchor and not stage.startswith("anchor"):
            PAIRED["step"] = _anchor_step(GROUPS[group]["width"], STAGE_BATCH[stage])
        result = STAGES[stage](GROUPS[group], variant)
        result["cpu_samples"] = CPU_SAMPLES
        if PAIRED["samples"]:
            result["anchor_samples"] = PAIRED["samples"]
            result["anchor_cpu_samples"] = PAIRED["cpu_samples"]
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
            result = run_one(key, src, args.threads, args.inline_anchor, args.inner_steps)
            result["command"] = _command()
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
