"""One matching phase: unroll the student on the synthetic set, compare with the expert, and
return the gradients of the normalised matching loss (reference-pipeline §5.8), as pure functions.

The student's flat parameters W (length P) are split at `free_start`: W[:free_start] is frozen
during the inner steps (detached, so no gradient is ever computed for it) and W[free_start:] is
updated, W <- W - alpha * grad. `free_start = 0` updates everything (U = all); `free_start =
classifier_start` updates only the classifier (U = classifier, expert decoupling), without
computing backbone parameter gradients that would be thrown away. `match` is the boolean mask S
of the coordinates compared with the expert's target:

    L = ||(W_N - theta_T)[S]||^2 / ||(W_0 - theta_T)[S]||^2

Two gradient modes:
- `unrolled`: exact backpropagation through every inner step (memory grows with N; MTT).
- `tesla`: constant memory in N, first order (reference §5.8): the inner gradients g_i are
  differentiated only through their direct dependence on (X, Y) at fixed W_i; exact for N = 1.
  The alpha gradient is exact for alpha with the sum of inner gradients G held fixed.
- `tesla_fd`: `tesla` with pass 2's mixed derivative c . dg_i/d(X, Y) taken as a central
  difference of the loss in W along c (two forward and input-only backward passes instead of a
  double backward): faster, equal to `tesla` up to O(step^2) and float rounding. The ReLU
  patterns it freezes are recorded by pass 1's forward at W_i (kept at one bit per unit, about
  2 MB per inner step at width 128 and 100 images), so pass 2 needs no extra forward.
Only the coordinates in S and in the free part contribute to the image/label gradients; with a
frozen-backbone expert (classifier phase) this equals the reference's full-parameter matching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from ltdd.distill.kinks import ActivationPatterns, PackedPatterns
from ltdd.distill.losses import InnerLoss
from ltdd.registry import Registry

Forward = Callable[[Tensor, Tensor, Tensor], Tensor]
"""`(frozen, free, x) -> logits` with parameters `cat(frozen, free)` (see `student.Student`)."""


@dataclass(frozen=True, eq=False)
class InnerStep:
    """One inner step: which synthetic images, and the (replayable) augmentation applied to them.

    `augment` must be deterministic and differentiable: every pass that revisits the step calls
    it again and must see the same augmentation (the DSA draw is fixed inside it).
    """

    index: Tensor
    augment: Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class PhaseGradients:
    """The phase's matching loss and its gradients w.r.t. images, labels (None if hard) and lr."""

    loss: Tensor
    images: Tensor
    labels: Tensor | None
    lr: Tensor


GradientMode = Callable[..., PhaseGradients]
GRADIENT_MODES: Registry[GradientMode] = Registry("gradient mode")


def matching_loss(final: Tensor, start: Tensor, target: Tensor, match: Tensor) -> Tensor:
    """||(final - target)[S]||^2 / ||(start - target)[S]||^2 (sum-reduced squared distances)."""
    return (final - target)[match].pow(2).sum() / (start - target)[match].pow(2).sum()


def _student(forward: Forward, frozen: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """`(free, x) -> logits` with the frozen part bound, detached (it never gets a gradient)."""
    frozen = frozen.detach()
    return lambda free, x: forward(frozen, free, x)


def _leaves(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Fresh leaf copies of images (and of soft labels) that autograd differentiates."""
    x = images.detach().requires_grad_()
    y = labels.detach()
    if y.is_floating_point():
        y.requires_grad_()
        return x, y, [x, y]
    return x, y, [x]


@GRADIENT_MODES.register("unrolled")
def unrolled_gradients(
    forward: Forward,
    loss_fn: InnerLoss,
    images: Tensor,
    labels: Tensor,
    lr: Tensor,
    start: Tensor,
    target: Tensor,
    steps: Sequence[InnerStep],
    match: Tensor,
    free_start: int = 0,
) -> PhaseGradients:
    """Exact gradients by backpropagation through all inner steps (alpha is live in the graph)."""
    x, y, wrt = _leaves(images, labels)
    alpha = lr.detach().requires_grad_()
    student = _student(forward, start[:free_start])
    w = start[free_start:].detach().requires_grad_()
    for step in steps:
        logits = student(w, step.augment(x[step.index]))
        (g,) = torch.autograd.grad(loss_fn(logits, y[step.index]), w, create_graph=True)
        w = w - alpha * g
    final = torch.cat([start[:free_start].detach(), w])
    loss = matching_loss(final, start, target, match)
    grads = torch.autograd.grad(loss, [*wrt, alpha])
    return PhaseGradients(
        loss=loss.detach(),
        images=grads[0],
        labels=grads[1] if len(wrt) == 2 else None,
        lr=grads[-1],
    )


MixedFn = Callable[
    [Callable[[Tensor, Tensor], Tensor], InnerLoss, Tensor, Tensor, Tensor, Tensor], Tensor
]


@dataclass(frozen=True)
class MixedTerm:
    """TESLA's pass-2 term: `term(student, loss_fn, w_i, c, x_i, y_i) -> s_i`, a scalar whose
    gradient in (x_i, y_i) is c . d/d(x_i, y_i) of grad_W loss_fn(student(W, x_i), y_i) at
    W = w_i. With `patterns`, pass 1 records the activation patterns of each step's forward
    at w_i and `term` receives them (packed) as a keyword `patterns`."""

    term: Callable[..., Tensor]
    patterns: bool = False


FD_STEP = 1e-3
"""Central-difference step of `tesla_fd`, relative to ||w_i||: W = w_i +- eps * c with
eps * ||c|| = FD_STEP * (1 + ||w_i||)."""


def _exact_mixed(student, loss_fn, w_i: Tensor, c: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """c . grad_W loss with the graph of the gradient kept (reference: a double backward)."""
    wv = w_i.detach().requires_grad_()
    (h,) = torch.autograd.grad(loss_fn(student(wv, x), y), wv, create_graph=True)
    return (c * h).sum()


def _fd_mixed(
    student,
    loss_fn,
    w_i: Tensor,
    c: Tensor,
    x: Tensor,
    y: Tensor,
    patterns: PackedPatterns | None = None,
) -> Tensor:
    """The directional derivative of the loss along c by a central difference in W,
    (l(w_i + eps c) - l(w_i - eps c)) / (2 eps), with the activation patterns of w_i frozen
    (`kinks`), so it converges to the autograd value. Its (x, y) gradient is a finite-difference
    Hessian-vector product: two forward and two input-only backward passes; no double backward
    and no parameter gradient. `patterns` are those of `student(w_i, x)` (recorded by pass 1);
    without them a forward without a graph records them here."""
    c_norm = c.norm()
    if float(c_norm) == 0.0:
        return (x.sum() + y.sum() if y.is_floating_point() else x.sum()) * 0.0
    eps = FD_STEP * (1.0 + w_i.norm()) / c_norm
    w_i = w_i.detach()
    if patterns is None:
        frozen = ActivationPatterns()
        with torch.no_grad(), frozen.record():
            student(w_i, x.detach())
    else:
        frozen = patterns.unpack()
    with frozen.replay():
        up = loss_fn(student(w_i + eps * c, x), y)
    with frozen.replay():
        down = loss_fn(student(w_i - eps * c, x), y)
    return (up - down) / (2.0 * eps)


def _tesla(
    mixed: MixedTerm,
    forward: Forward,
    loss_fn: InnerLoss,
    images: Tensor,
    labels: Tensor,
    lr: Tensor,
    start: Tensor,
    target: Tensor,
    steps: Sequence[InnerStep],
    match: Tensor,
    free_start: int = 0,
) -> PhaseGradients:
    """TESLA's constant-memory first-order gradients (reference §5.8); `mixed` is pass 2's term."""
    alpha = float(lr.detach())
    student = _student(forward, start[:free_start])
    x0, y0 = images.detach(), labels.detach()

    # Pass 1: unroll without a graph across steps; keep each W_i and the sum G of the g_i
    # (and each forward's activation patterns when pass 2 replays them).
    w = start[free_start:].detach()
    weights: list[Tensor] = []
    recorded: list[dict[str, PackedPatterns]] = []
    total = torch.zeros_like(w)
    for step in steps:
        weights.append(w)
        wv = w.detach().requires_grad_()
        patterns = ActivationPatterns()
        with patterns.record() if mixed.patterns else nullcontext():
            logits = student(wv, step.augment(x0[step.index]))
        recorded.append({"patterns": patterns.pack()} if mixed.patterns else {})
        (g,) = torch.autograd.grad(loss_fn(logits, y0[step.index]), wv)
        w = w - alpha * g
        total += g

    # Loss and alpha gradient with W_N = W_0 - alpha * G.
    g_full = torch.cat([torch.zeros_like(start[:free_start]), total])
    denom = (start - target)[match].pow(2).sum()
    resid = (start - alpha * g_full - target)[match]
    loss = resid.pow(2).sum() / denom
    d_lr = -2.0 * (g_full[match] * resid).sum() / denom

    # Pass 2: dL/dg_i = c for every i; accumulate c . dg_i/d(X, Y) one step at a time.
    coeff = 2.0 * (alpha * (target - start) + alpha**2 * g_full) / denom
    coeff = torch.where(match, coeff, torch.zeros_like(coeff))[free_start:]
    x, y, wrt = _leaves(images, labels)
    d_images = torch.zeros_like(images)
    d_labels = torch.zeros_like(labels) if len(wrt) == 2 else None
    for step, w_i, extra in zip(steps, weights, recorded, strict=True):
        x_i, y_i = step.augment(x[step.index]), y[step.index]
        term = mixed.term(student, loss_fn, w_i, coeff, x_i, y_i, **extra)
        grads = torch.autograd.grad(term, wrt)
        d_images += grads[0]
        if d_labels is not None:
            d_labels += grads[1]
    return PhaseGradients(loss=loss.detach(), images=d_images, labels=d_labels, lr=d_lr.detach())


@GRADIENT_MODES.register("tesla")
def tesla_gradients(*args, **kwargs) -> PhaseGradients:
    """TESLA exactly as reference §5.8 (pass 2 by double backward)."""
    return _tesla(MixedTerm(_exact_mixed), *args, **kwargs)


@GRADIENT_MODES.register("tesla_fd")
def tesla_fd_gradients(
    forward: Forward,
    loss_fn: InnerLoss,
    images: Tensor,
    labels: Tensor,
    lr: Tensor,
    start: Tensor,
    target: Tensor,
    steps: Sequence[InnerStep],
    match: Tensor,
    free_start: int = 0,
) -> PhaseGradients:
    """TESLA with pass 2's mixed second derivative by a central finite difference in W
    (`FD_STEP`) when every parameter is free: no double backward through the backbone; agrees
    with `tesla` to about 1e-4 relative in float32. With a frozen backbone (free_start > 0) the
    double backward stops at the classifier and is cheaper than three backbone forwards, so
    the exact term is used there."""
    mixed = MixedTerm(_fd_mixed, patterns=True) if free_start == 0 else MixedTerm(_exact_mixed)
    args = (forward, loss_fn, images, labels, lr, start, target, steps, match, free_start)
    return _tesla(mixed, *args)
