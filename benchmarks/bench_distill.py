"""Seconds per iteration and peak memory of the `unrolled` and `tesla` gradient modes as the
number of inner steps grows (one matching phase, LTDD's DAM phase: S = backbone, U = all).

Setting: ConvNet width 128 (depth 3, instance norm) on Fashion-MNIST-shaped inputs (1x28x28, 10
classes), IPC 10 (100 synthetic images), `--batch` of them per inner step (default 10, so that
all settings fit in about 10 minutes on a shared 2-core CPU; 100 = the paper's full batch),
DSA on. The synthetic images, labels and the expert trajectory are random tensors of the right
shapes: the cost of a matching phase does not depend on their values. Each setting runs in a
fresh subprocess; peak memory is the process's `ru_maxrss` (CPU) or
`torch.cuda.max_memory_allocated` (GPU), with the setup's memory (before the first iteration).
One torch thread by default: on a CPU shared with other jobs, two threads were 14x slower.

    .venv/bin/python benchmarks/bench_distill.py [--steps 10 20 40 80] [--iterations 1]
        [--device cpu|cuda] [--out benchmarks/results/distill.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from ltdd.data.augment import DSAConfig, apply_dsa, sample_dsa
from ltdd.distill.losses import inner_loss
from ltdd.distill.matching import GRADIENT_MODES, InnerStep
from ltdd.distill.student import Student
from ltdd.models import ParamLayout, create_model

SHAPE, CLASSES, IPC, WIDTH = (1, 28, 28), 10, 10, 128


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_setting(mode: str, steps: int, batch: int, iterations: int, device: torch.device) -> dict:
    """Time `iterations` matching phases of `steps` inner steps of `batch` images each."""
    g = torch.Generator().manual_seed(0)
    model = create_model("convnet", CLASSES, SHAPE, seed=0, width=WIDTH).to(device)
    layout = ParamLayout.from_module(model)
    student = Student(model, layout)
    n = CLASSES * IPC
    images = torch.randn((n, *SHAPE), generator=g).to(device)
    labels = torch.randn((n, CLASSES), generator=g).to(device)
    lr = torch.tensor(0.01, device=device)
    start = layout.flatten(model).to(device)
    target = start + 0.01 * torch.randn(layout.num_params, generator=g).to(device)
    match = layout.mask("backbone").to(device)
    loss_fn = inner_loss("prior_weighted_soft_ce", [5000 // (i + 1) for i in range(CLASSES)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    setup = peak_mb(device)
    times = []
    for _ in range(iterations):
        inner = []
        for _ in range(steps):
            draw = sample_dsa(batch, SHAPE, g, DSAConfig()).to(device)
            index = torch.randperm(n, generator=g)[:batch].to(device)
            inner.append(InnerStep(index=index, augment=lambda x, d=draw: apply_dsa(x, d)))
        tick = time.perf_counter()
        out = GRADIENT_MODES.get(mode)(
            student.forward, loss_fn, images, labels, lr, start, target, inner, match
        )
        float(out.loss)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - tick)
    return {
        "mode": mode,
        "steps": steps,
        "batch": batch,
        "seconds_per_iteration": min(times),
        "setup_mb": setup,
        "peak_mb": peak_mb(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--modes", nargs="+", default=["tesla", "unrolled"])
    parser.add_argument("--batch", type=int, default=10, help="batch_syn (100 = all images)")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per setting")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/distill.md"))
    parser.add_argument("--one", nargs=2, metavar=("MODE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.one:
        torch.set_num_threads(args.threads)
        mode, steps = args.one[0], int(args.one[1])
        print(json.dumps(one_setting(mode, steps, args.batch, args.iterations, device)))
        return
    rows = []
    for steps in args.steps:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--one", mode, str(steps)]
            cmd += ["--batch", str(args.batch), "--iterations", str(args.iterations)]
            cmd += ["--device", args.device, "--threads", str(args.threads)]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                reason = (result.stderr.strip().splitlines() or ["killed"])[-1]
                rows.append({"mode": mode, "steps": steps, "error": reason[:80]})
            else:
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    write_report(args, rows, device)


def write_report(args: argparse.Namespace, rows: list[dict], device: torch.device) -> None:
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        machine = (
            f"{platform.machine()} CPU, {os.cpu_count()} cores, {args.threads} torch thread(s)"
        )
    command = " ".join([".venv/bin/python", "benchmarks/bench_distill.py", *sys.argv[1:]])
    unit = "peak GPU memory allocated" if device.type == "cuda" else "peak RSS of the process"
    lines = [
        "# Distillation: unrolled vs TESLA gradients",
        "",
        f"Command: `{command}`",
        f"Machine: {machine}; torch {torch.__version__}; date {datetime.date.today()}.",
        "",
        f"One matching phase (DAM: S = backbone, U = all), ConvNet width {WIDTH}, Fashion-MNIST "
        f"shape, IPC {IPC} ({CLASSES * IPC} images; batch_syn {args.batch} per inner step), "
        "DSA on; random "
        "images, labels and trajectory (timing does not depend on values). Best of "
        f"{args.iterations} iteration(s) per setting, each setting in a fresh process; memory = "
        f"{unit} (MB), setup = the same before the first iteration.",
        "",
        "| inner steps | mode | s / iteration | peak MB | setup MB | peak - setup MB |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['steps']} | {r['mode']} | failed: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['steps']} | {r['mode']} | {r['seconds_per_iteration']:.2f} | "
            f"{r['peak_mb']:.0f} | {r['setup_mb']:.0f} | {r['peak_mb'] - r['setup_mb']:.0f} |"
        )
    lines += [
        "",
        "Reading: unrolled keeps every inner step's graph, so its memory grows linearly with the",
        "steps; TESLA keeps only the N stored parameter vectors W_i (4 bytes x P each, as the",
        "reference does) and one step's graph at a time. TESLA does two passes per step (the",
        "second with a double backward), so it is not faster than unrolled; it buys memory.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
