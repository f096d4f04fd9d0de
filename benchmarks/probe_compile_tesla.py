"""Can exact TESLA's pass 2 be compiled? Time and accuracy of its mixed term, one inner step.

Pass 2 of `gradient: tesla` needs d/d(X, Y) of c . grad_W loss(W, X, Y), a double backward.
AOTAutograd cannot compile a function that is later differentiated twice, but the whole term can
be written with `torch.func` (grad of a grad) and compiled as one inference graph, returning the
image and label gradients. This probe times, on random Fashion-MNIST-LT shaped inputs (batch 100,
soft labels, LTDD's prior-weighted soft cross-entropy, ConvNet of the given widths, one thread):
- eager: autograd double backward, as `matching._exact_mixed` does;
- compiled: `torch.compile` (inductor) of the torch.func formulation (its first call, which
  compiles, timed apart; inductor's worker processes are not in the CPU clock);
and measures both against a float64 eager reference (max |difference| / max |reference|, per
output).

    .venv/bin/python benchmarks/probe_compile_tesla.py [--widths 32 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.func import grad

sys.path.insert(0, str(Path(__file__).parent))
import bench_speed  # noqa: E402

from common import RESULTS, command  # noqa: E402

COUNTS = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]


def _terms(width: int, dtype: torch.dtype):
    """(eager term, torch.func term, inputs) for a ConvNet of `width` in `dtype`."""
    from ltdd.distill.losses import inner_loss
    from ltdd.distill.student import Student
    from ltdd.models import ParamLayout, create_model

    model = create_model("convnet", 10, (1, 28, 28), seed=0, width=width).to(dtype)
    student = Student(model, ParamLayout.from_module(model))
    loss_fn = inner_loss("prior_weighted_soft_ce", COUNTS)
    g = torch.Generator().manual_seed(0)
    w = student.layout.flatten(model).to(dtype)
    c = (1e-3 * torch.randn(w.shape, generator=g)).to(dtype)
    x = torch.randn(100, 1, 28, 28, generator=g).to(dtype)
    y = torch.randn(100, 10, generator=g).to(dtype)
    frozen = w[:0]

    def loss(wv, xv, yv):
        return loss_fn(student.forward(frozen, wv, xv), yv)

    def eager(wv, cv, xv, yv):
        xl, yl, wl = (t.detach().requires_grad_() for t in (xv, yv, wv))
        (h,) = torch.autograd.grad(loss(wl, xl, yl), wl, create_graph=True)
        return torch.autograd.grad((cv * h).sum(), (xl, yl))

    def functional(wv, cv, xv, yv):
        return grad(lambda a, b: (cv * grad(loss)(wv, a, b)).sum(), argnums=(0, 1))(xv, yv)

    return eager, functional, (w, c, x, y)


def _cpu(fn, reps: int) -> tuple[float, tuple]:
    out = fn()
    tick = time.process_time()
    for _ in range(reps):
        out = fn()
    return (time.process_time() - tick) / reps, out


def _error(out: tuple, ref: tuple) -> list[float]:
    pairs = zip(out, ref, strict=True)
    return [float((a.double() - b).abs().max() / b.abs().max()) for a, b in pairs]


def probe(width: int, reps: int) -> dict:
    eager, functional, args = _terms(width, torch.float32)
    _, _, args64 = _terms(width, torch.float64)
    reference = _terms(width, torch.float64)[0](*args64)
    eager_s, eager_out = _cpu(lambda: eager(*args), reps)
    compiled = torch.compile(functional, dynamic=False)
    tick, wall = time.process_time(), time.perf_counter()
    with torch.no_grad():
        compiled(*args)
    first_cpu, first_wall = time.process_time() - tick, time.perf_counter() - wall
    with torch.no_grad():
        compiled_s, compiled_out = _cpu(lambda: compiled(*args), reps)
    return {
        "stage": "distill_pass2_term",
        "settings": f"width {width}, batch 100, tesla pass 2, one inner step",
        "seconds": round(eager_s, 3),
        "unit": "inner step (CPU seconds)",
        "peak_rss_mb": round(bench_speed._peak_mb(), 1),
        "seconds_compiled": round(compiled_s, 3),
        "ratio_eager_over_compiled": round(eager_s / compiled_s, 3),
        "first_call_compiled_cpu_s": round(first_cpu, 1),
        "first_call_compiled_wall_s": round(first_wall, 1),
        "error_vs_float64_eager": [f"{e:.1e}" for e in _error(eager_out, reference)],
        "error_vs_float64_compiled": [f"{e:.1e}" for e in _error(compiled_out, reference)],
    }


def record(rows: list[dict]) -> dict:
    """A probe's results file: its rows with the command, machine, date and load."""
    return {
        "command": command(),
        "machine": bench_speed.cpu_description(1),
        "date": time.strftime("%Y-%m-%d"),
        "load": bench_speed._loadavg(),
        "rows": rows,
    }


def heading(title: str, result: dict) -> list[str]:
    """The markdown title and provenance lines of a probe's report."""
    return [
        f"# {title}",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}",
        f"- date: {result['date']}; load at start {result['load']}",
        "",
    ]


def save(out: str, result: dict, lines: list[str]) -> None:
    """Write benchmarks/results/<out>.json and .md, and print the markdown."""
    (RESULTS / f"{out}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="probe-compile-tesla")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_speed._as_the_cli_does()
    rows = [probe(w, args.reps) for w in args.widths]
    result = record(rows)
    title = "Exact TESLA pass 2 compiled (torch.func grad of grad + torch.compile) vs eager"
    lines = [
        *heading(title, result),
        "CPU seconds of one inner step's mixed term (image and label gradients); errors are",
        "max |x - x64| / max |x64| against float64 eager, for (images, labels).",
        "",
        "| width | eager s | compiled s | eager / compiled | first compiled call cpu / wall s "
        "| error eager | error compiled |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['settings'].split(',')[0].split()[1]} | {r['seconds']:.3f} "
            f"| {r['seconds_compiled']:.3f} | {r['ratio_eager_over_compiled']:.2f} "
            f"| {r['first_call_compiled_cpu_s']:.0f} / {r['first_call_compiled_wall_s']:.0f} "
            f"| {', '.join(r['error_vs_float64_eager'])} "
            f"| {', '.join(r['error_vs_float64_compiled'])} |"
        )
    save(args.out, result, lines)


if __name__ == "__main__":
    main()
