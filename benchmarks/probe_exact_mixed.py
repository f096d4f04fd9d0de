"""Exact ways to compute TESLA's pass-2 term without autograd's double backward: time and error.

Pass 2 of `gradient: tesla` needs d/d(X, Y) of c . grad_W loss(W, X, Y). `matching._exact_mixed`
takes it by a double backward, where the instance norm's double backward (PyTorch's composite
formula) is a large share of the cost at width 128. This probe times, one thread, on random
Fashion-MNIST-LT shaped inputs (batch 100, soft labels, LTDD's prior-weighted soft CE), one inner
step's term by:
- `double_backward`: the shipped exact term (`matching._exact_mixed`);
- `forward_over_reverse`: the same derivative by symmetry of mixed partials, c . grad_W l =
  d/de l(W + e c): the network runs in forward-mode AD along c (`torch.autograd.forward_ad`)
  and reverse mode differentiates the tangent; the loss head is differentiated by reverse mode
  (log-softmax's forward-AD formula cannot be differentiated again in torch 2.13);
- `norm_composite`: the double backward with each instance norm's backward written out as a
  short differentiable formula (native forward), instead of PyTorch's general group-norm one;
- `finite_difference`: `tesla_fd`'s central difference (`matching._fd_mixed`), for reference:
  cheaper, not exact;
each against a float64 double backward (max |x - x64| / max |x64|, for images and labels).

    .venv/bin/python benchmarks/probe_exact_mixed.py [--widths 32 128] [--reps 3]
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import torch
import torch.autograd.forward_ad as fwad
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).parent))
import bench_speed  # noqa: E402
from probe_compile_tesla import COUNTS, _cpu, _error, heading, record, save  # noqa: E402


class _NormBackward(torch.autograd.Function):
    """Instance norm (GroupNorm with one channel per group) with its backward as a differentiable
    formula: dx = rstd (g - mean(g) - x_hat mean(g x_hat)), g = dy * weight."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        return F.group_norm(x, x.shape[1], weight, bias, eps)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight = ctx.saved_tensors
        dims = (2, 3)
        centred = x - x.mean(dim=dims, keepdim=True)
        rstd = torch.rsqrt(centred.pow(2).mean(dim=dims, keepdim=True) + ctx.eps)
        x_hat = centred * rstd
        g = dy * weight.view(1, -1, 1, 1)
        dx = rstd * (
            g - g.mean(dim=dims, keepdim=True) - x_hat * (g * x_hat).mean(dim=dims, keepdim=True)
        )
        return dx, (dy * x_hat).sum(dim=(0, 2, 3)), dy.sum(dim=(0, 2, 3)), None


def _composite_norm(module: nn.GroupNorm, x: Tensor) -> Tensor:
    return _NormBackward.apply(x, module.weight, module.bias, module.eps)


def _setup(width: int, dtype: torch.dtype, composite_norm: bool = False):
    """(student(W, x) -> logits, loss_fn, w, c, x, y) of a ConvNet of `width` in `dtype`."""
    from ltdd.distill.losses import inner_loss
    from ltdd.distill.student import Student
    from ltdd.models import ParamLayout, create_model

    model = create_model("convnet", 10, (1, 28, 28), seed=0, width=width).to(dtype)
    if composite_norm:
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.forward = types.MethodType(_composite_norm, m)
    student = Student(model, ParamLayout.from_module(model))
    g = torch.Generator().manual_seed(0)
    w = student.layout.flatten(model).to(dtype)
    c = (1e-3 * torch.randn(w.shape, generator=g)).to(dtype)
    x = torch.randn(100, 1, 28, 28, generator=g).to(dtype)
    y = torch.randn(100, 10, generator=g).to(dtype)
    frozen = w[:0]
    loss_fn = inner_loss("prior_weighted_soft_ce", COUNTS)
    return (lambda wv, xv: student.forward(frozen, wv, xv)), loss_fn, w, c, x, y


def _forward_over_reverse(student, loss_fn, w: Tensor, c: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """c . grad_W loss at w, as the tangent along c of the loss (exact, no double backward
    through the network)."""
    with fwad.dual_level():
        logits, tangent = fwad.unpack_dual(student(fwad.make_dual(w.detach(), c), x))
    (d_logits,) = torch.autograd.grad(loss_fn(logits, y), logits, create_graph=True)
    return (d_logits * tangent).sum()


def _variants():
    from ltdd.distill.matching import _exact_mixed, _fd_mixed

    return {
        "double_backward": (_exact_mixed, False),
        "forward_over_reverse": (_forward_over_reverse, False),
        "norm_composite": (_exact_mixed, True),
        "finite_difference": (_fd_mixed, False),
    }


def _gradients(term, student, loss_fn, w, c, x, y) -> tuple[Tensor, Tensor]:
    xl, yl = x.detach().requires_grad_(), y.detach().requires_grad_()
    return torch.autograd.grad(term(student, loss_fn, w, c, xl, yl), (xl, yl))


def probe(width: int, reps: int) -> list[dict]:
    reference = _gradients(_variants()["double_backward"][0], *_setup(width, torch.float64))
    rows, base = [], None
    for name, (term, composite) in _variants().items():
        args = _setup(width, torch.float32, composite)
        seconds, out = _cpu(lambda t=term, a=args: _gradients(t, *a), reps)
        base = seconds if base is None else base
        rows.append(
            {
                "stage": "distill_pass2_term",
                "settings": f"width {width}, batch 100, tesla pass 2, one inner step, {name}",
                "variant": name,
                "width": width,
                "seconds": round(seconds, 3),
                "unit": "inner step (CPU seconds)",
                "ratio_double_backward_over_variant": round(base / seconds, 3),
                "error_vs_float64": [f"{e:.1e}" for e in _error(out, reference)],
                "peak_rss_mb": round(bench_speed._peak_mb(), 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="probe-exact-mixed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_speed._as_the_cli_does()
    rows = [row for w in args.widths for row in probe(w, args.reps)]
    result = record(rows)
    lines = [
        *heading("Exact TESLA pass 2 without autograd's double backward: time and error", result),
        "CPU seconds of one inner step's mixed term (image and label gradients), the mean",
        f"of {args.reps} repetitions after one warm-up; ratio = double backward / variant",
        "(> 1: faster); errors are max |x - x64| / max |x64| against a float64 double backward,",
        "for (images, labels). `finite_difference` is `tesla_fd`'s term (not exact).",
        "",
        "| width | variant | CPU s | ratio | error |",
        "|---:|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['width']} | {r['variant']} | {r['seconds']:.3f} "
            f"| {r['ratio_double_backward_over_variant']:.2f} "
            f"| {', '.join(r['error_vs_float64'])} |"
        )
    save(args.out, result, lines)


if __name__ == "__main__":
    main()
