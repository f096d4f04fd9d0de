"""How far, and in which direction, the distillation's student moves compared with the expert
segment it is asked to match, on the iteration-0 set (issue 9's diagnosis of a flat matching loss).

For each phase of a method and a few start epochs s of expert 0, the student is unrolled from
the expert's snapshot s for the phase's N inner steps on the iteration-0 synthetic set with
alpha = `--alpha`, and the matched coordinates S of G = sum of the inner gradients are compared
with the expert's displacement d = theta_{s+M} - theta_s:
- travel = ||alpha G|| / ||d|| (is the step budget large enough to cover the segment?),
- cos(-G, d) (does the student go where the expert went?),
- the alpha minimising the first-order matching loss ||d + alpha G||^2 / ||d||^2 along G,
  alpha* = -G.d / ||G||^2, and that loss's minimum 1 - cos^2 (the best any alpha can do).
Nothing is trained and the test set is not read. Writes benchmarks/results/<out>.md and .json.

Run: `.venv/bin/python benchmarks/probe_step_budget.py --config configs/run/fmnist-lt-large.yaml
--run-dir runs/b100-ipc10 [key=value ...]`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ltdd.config import load_config
from ltdd.distill.engine import (
    _steps,
    build_student,
    initial_state,
    plan_phases,
    resolve_method,
)
from ltdd.experts import TrajectoryStore
from ltdd.io import write_json, write_text
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run

from common import RESULTS, header, provenance


def probe(plan, student, state, section, generator, start_epoch: int, alpha: float) -> dict:
    """travel, cosine and first-order best alpha of one phase from `start_epoch` of expert 0."""
    start = plan.source.snapshot(0, start_epoch)
    target = plan.source.snapshot(0, start_epoch + section.expert_epochs)
    free = plan.free_start
    w, total = start[free:].clone(), torch.zeros_like(start[free:])
    images, labels = state.images.detach(), state.labels.detach()
    for step in _steps(state, section, plan, generator):
        wv = w.detach().requires_grad_()
        logits = student.forward(start[:free], wv, step.augment(images[step.index]))
        (g,) = torch.autograd.grad(plan.loss_fn(logits, labels[step.index]), wv)
        w, total = w - alpha * g, total + g
    match = plan.match[free:]
    d, g = (target - start)[free:][match], total[match]
    cos = float(torch.dot(-g, d) / (g.norm() * d.norm()))
    return {
        "start_epoch": start_epoch,
        "travel": float(alpha * g.norm() / d.norm()),
        "cos": cos,
        "best_alpha": float(torch.dot(-g, d) / g.pow(2).sum()),
        "best_loss": 1.0 - cos**2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--method", default="ltdd")
    parser.add_argument("--alpha", type=float, default=None, help="default: the section's lr_init")
    parser.add_argument("--out", default="step-budget")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the profile")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(
        RunConfig,
        args.config,
        [f"runs_dir={args.run_dir.parent}", f"name={args.run_dir.name}", *args.overrides],
    )
    run = Run(cfg, progress=False)
    data = run.prepare()
    base = getattr(cfg.distill, args.method)
    section = dataclasses.replace(base, method=args.method, ipc=cfg.ipc)
    alpha = args.alpha if args.alpha is not None else section.lr_init
    method, _ = resolve_method(section)
    experts = {
        k: TrajectoryStore(run.dir / "experts" / run._expert_kind(k)) for k in method.expert_kinds
    }
    cpu = torch.device("cpu")
    student = build_student(section, data, cpu)
    plans = plan_phases(method, section, experts, student, data.train_counts, cpu)
    state = initial_state(section, method, data, experts, student, plans, cpu)
    generator = torch.Generator().manual_seed(1)
    rows = []
    for p, plan in enumerate(plans):
        low, high = plan.cfg.min_start_epoch, plan.cfg.max_start_epoch - 1
        for s in sorted({low, (low + high) // 2, high}):
            found = probe(plan, student, state, section, generator, s, alpha)
            rows.append({"phase": p + 1, **found})
    lines = [
        header(f"Step budget of the {args.method} student against its experts"),
        f"- run directory `{args.run_dir}`, profile `{args.config}`; iteration-0 set; expert 0; "
        f"alpha = {alpha:g}; N inner steps per phase as the profile; M = {section.expert_epochs}.",
        "",
        "| phase | start epoch | travel ‖αG‖/‖d‖ | cos(−G, d) | best α (first order) | "
        "best loss 1 − cos² |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['phase']} | {r['start_epoch']} | {r['travel']:.3f} | {r['cos']:.3f} | "
            f"{r['best_alpha']:.4f} | {r['best_loss']:.3f} |"
            for r in rows
        ],
    ]
    write_text(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(
        RESULTS / f"{args.out}.json",
        {
            **provenance(),
            "alpha": alpha,
            "rows": rows,
        },
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
