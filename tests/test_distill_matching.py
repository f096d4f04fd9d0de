"""Gradients of one matching phase (reference §5.8, §10 checks 6-7), float64 on a tiny ConvNet.

Oracles: central finite differences of the matching loss (unrolled), autograd of TESLA's
first-order surrogate built with full parameters and a multiplicative update mask (tesla),
and the fully masked unrolled computation (classifier phase).
"""

from __future__ import annotations

import pytest
import torch
from distill_toy import dsa_steps, one_thread, toy_model

from ltdd.distill.kinks import ActivationPatterns
from ltdd.distill.losses import inner_loss
from ltdd.distill.matching import (
    GRADIENT_MODES,
    MixedTerm,
    _fd_mixed,
    _tesla,
    matching_loss,
    tesla_gradients,
    unrolled_gradients,
)
from ltdd.distill.student import Student
from ltdd.errors import UserError
from ltdd.models import ParamLayout, create_model

C, IPC = 4, 2
N_IMG = C * IPC

_single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def problem(seed: int, frozen_backbone: bool = False, soft: bool = True):
    """Model, forward, images, labels, lr, start, target (float64)."""
    g = torch.Generator().manual_seed(seed)
    model, layout = toy_model(C, dtype=torch.float64, seed=seed)
    forward = Student(model, layout).forward
    start = layout.flatten(model)
    step = 0.05 * torch.randn(layout.num_params, generator=g, dtype=torch.float64)
    if frozen_backbone:
        step = step * layout.mask("classifier")
    target = start + step
    images = torch.randn(N_IMG, 1, 8, 8, generator=g, dtype=torch.float64)
    if soft:
        labels = torch.randn(N_IMG, C, generator=g, dtype=torch.float64)
    else:
        labels = torch.arange(C).repeat_interleave(IPC)
    lr = torch.tensor(0.3, dtype=torch.float64)
    return layout, forward, images, labels, lr, start, target


def full(forward):
    """`(flat, x) -> logits` over all parameters (nothing frozen)."""
    return lambda w, x: forward(w[:0], w, x)


def surrogate(forward, loss_fn, images, labels, lr, start, target, steps, match, update):
    """TESLA's surrogate (§10 check 6): W_N = W_0 - alpha * sum_i U * grad l(X_i; stopgrad W_i)."""
    forward = full(forward)
    alpha0 = float(lr.detach())
    weights, w = [], start.clone()
    for s in steps:
        weights.append(w)
        wv = w.detach().requires_grad_()
        loss = loss_fn(forward(wv, s.augment(images.detach()[s.index])), labels.detach()[s.index])
        w = w - alpha0 * torch.autograd.grad(loss, wv)[0] * update
    total = 0.0
    for s, w_i in zip(steps, weights, strict=True):
        wv = w_i.detach().requires_grad_()
        loss = loss_fn(forward(wv, s.augment(images[s.index])), labels[s.index])
        total = total + torch.autograd.grad(loss, wv, create_graph=True)[0] * update
    return matching_loss(start - lr * total, start, target, match)


def masked_unrolled(forward, loss_fn, images, labels, lr, start, target, steps, match, update):
    """Exact unrolled loss with full parameters and the update mask multiplied in."""
    forward = full(forward)
    w = start.clone().requires_grad_()
    for s in steps:
        loss = loss_fn(forward(w, s.augment(images[s.index])), labels[s.index])
        w = w - lr * torch.autograd.grad(loss, w, create_graph=True)[0] * update
    return matching_loss(w, start, target, match)


def autograd_of(fn, images, labels, lr, *args):
    x = images.clone().requires_grad_()
    y = labels.clone().requires_grad_() if labels.is_floating_point() else labels
    a = lr.clone().requires_grad_()
    loss = fn(images=x, labels=y, lr=a, **args[0])
    wrt = [x, y, a] if y.requires_grad else [x, a]
    grads = torch.autograd.grad(loss, wrt)
    return loss.detach(), grads[0], (grads[1] if len(wrt) == 3 else None), grads[-1]


def close(a, b, tol=1e-9):
    assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()


def loss_for(name: str):
    return inner_loss(name, [8, 4, 2, 1])


@pytest.mark.parametrize(
    "match,update,loss_name",
    [("all", "all", "soft_ce"), ("backbone", "all", "prior_weighted_soft_ce")],
)
def test_unrolled_equals_finite_differences(match, update, loss_name):
    layout, forward, images, labels, lr, start, target = problem(1)
    mask = torch.ones(layout.num_params, dtype=bool) if match == "all" else layout.mask(match)
    steps = dsa_steps(N_IMG, 5, 3, seed=2)
    loss_fn = loss_for(loss_name)

    def loss_at(x, y, a):
        return unrolled_gradients(forward, loss_fn, x, y, a, start, target, steps, mask).loss

    grads = unrolled_gradients(forward, loss_fn, images, labels, lr, start, target, steps, mask)
    g = torch.Generator().manual_seed(3)
    eps = 1e-6
    for value, grad, name in [(images, grads.images, "x"), (labels, grads.labels, "y")]:
        v = torch.randn(value.shape, generator=g, dtype=torch.float64)
        plus = {"x": images, "y": labels, "a": lr} | {name: value + eps * v}
        minus = {"x": images, "y": labels, "a": lr} | {name: value - eps * v}
        fd = (loss_at(**plus) - loss_at(**minus)) / (2 * eps)
        assert torch.isclose(fd, (grad * v).sum(), rtol=1e-5, atol=1e-9), (name, fd)
    fd = (loss_at(images, labels, lr + eps) - loss_at(images, labels, lr - eps)) / (2 * eps)
    assert torch.isclose(fd, grads.lr, rtol=1e-5, atol=1e-9)
    assert grads.loss > 0 and grads.images.abs().sum() > 0


def test_unrolled_hard_labels_equal_finite_differences():
    layout, forward, images, labels, lr, start, target = problem(4, soft=False)
    mask = torch.ones(layout.num_params, dtype=bool)
    steps = dsa_steps(N_IMG, 4, 2, seed=5)
    loss_fn = loss_for("ce")
    grads = unrolled_gradients(forward, loss_fn, images, labels, lr, start, target, steps, mask)
    assert grads.labels is None
    v = torch.randn(images.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    eps = 1e-6

    def loss_at(x):
        return unrolled_gradients(forward, loss_fn, x, labels, lr, start, target, steps, mask).loss

    fd = (loss_at(images + eps * v) - loss_at(images - eps * v)) / (2 * eps)
    assert torch.isclose(fd, (grads.images * v).sum(), rtol=1e-5)


@pytest.mark.parametrize("soft", [True, False])
def test_tesla_equals_autograd_of_first_order_surrogate(soft):
    layout, forward, images, labels, lr, start, target = problem(7, soft=soft)
    match = layout.mask("backbone")
    update = torch.ones(layout.num_params, dtype=torch.float64)
    steps = dsa_steps(N_IMG, 3, 4, seed=8)
    loss_fn = loss_for("prior_weighted_soft_ce" if soft else "ce")
    ours = tesla_gradients(forward, loss_fn, images, labels, lr, start, target, steps, match)
    args = dict(
        forward=forward,
        loss_fn=loss_fn,
        start=start,
        target=target,
        steps=steps,
        match=match,
        update=update,
    )
    loss, d_x, d_y, d_a = autograd_of(surrogate, images, labels, lr, args)
    close(ours.loss, loss)
    close(ours.images, d_x)
    close(ours.lr, d_a)
    if soft:
        close(ours.labels, d_y)
    exact = unrolled_gradients(forward, loss_fn, images, labels, lr, start, target, steps, match)
    assert not torch.allclose(ours.images, exact.images, rtol=1e-6), "N > 1 must differ (1st order)"


@pytest.mark.parametrize("group", ["all", "backbone"])
def test_tesla_equals_unrolled_for_one_inner_step(group):
    layout, forward, images, labels, lr, start, target = problem(9)
    match = torch.ones(layout.num_params, dtype=bool) if group == "all" else layout.mask(group)
    steps = dsa_steps(N_IMG, 8, 1, seed=10)
    loss_fn = loss_for("soft_ce")
    args = (forward, loss_fn, images, labels, lr, start, target, steps, match)
    a, b = tesla_gradients(*args), unrolled_gradients(*args)
    for x, y in [(a.loss, b.loss), (a.images, b.images), (a.labels, b.labels), (a.lr, b.lr)]:
        close(x, y)


@pytest.mark.parametrize("mode", GRADIENT_MODES.names())
def test_classifier_phase_equals_masked_full_computation(mode):
    """ED phase: update and match the classifier only, against a frozen-backbone expert.

    It must equal the full-parameter computation with the update mask multiplied in (the
    reference's way, which computes backbone gradients and zeroes them), and its loss over all
    parameters must equal the classifier-only loss: the student's backbone never moves.
    """
    layout, forward, images, labels, lr, start, target = problem(11, frozen_backbone=True)
    cs = layout.classifier_start
    cls_mask = layout.mask("classifier")
    all_mask = torch.ones(layout.num_params, dtype=bool)
    steps = dsa_steps(N_IMG, 3, 3, seed=12)
    loss_fn = loss_for("soft_ce")
    fn = GRADIENT_MODES.get(mode)
    args = (forward, loss_fn, images, labels, lr, start, target, steps)
    ours = fn(*args, cls_mask, free_start=cs)
    over_all = fn(*args, all_mask, free_start=cs)
    for x, y in [
        (ours.loss, over_all.loss),
        (ours.images, over_all.images),
        (ours.lr, over_all.lr),
    ]:
        close(x, y)
    oracle = surrogate if mode.startswith("tesla") else masked_unrolled
    ref = dict(
        forward=forward,
        loss_fn=loss_fn,
        start=start,
        target=target,
        steps=steps,
        match=all_mask,
        update=cls_mask.to(torch.float64),
    )
    loss, d_x, d_y, d_a = autograd_of(oracle, images, labels, lr, ref)
    close(ours.loss, loss)
    close(ours.images, d_x)
    close(ours.labels, d_y)
    close(ours.lr, d_a)
    assert ours.images.abs().sum() > 0, "images get gradient through the features"


def test_classifier_phase_computes_no_backbone_gradient():
    """With free_start = classifier_start, autograd never reaches the backbone parameters."""
    layout, forward, images, labels, lr, start, target = problem(13, frozen_backbone=True)
    model = toy_model(C, dtype=torch.float64, seed=13)[0]
    calls = []

    def spy(frozen, free, x):
        calls.append((frozen.requires_grad, free.numel()))
        return Student(model, layout).forward(frozen, free, x)

    steps = dsa_steps(N_IMG, 4, 2, seed=14)
    tesla_gradients(
        spy,
        loss_for("soft_ce"),
        images,
        labels,
        lr,
        start,
        target,
        steps,
        layout.mask("classifier"),
        free_start=layout.classifier_start,
    )
    n_cls = layout.num_params - layout.classifier_start
    assert calls and all(c == (False, n_cls) for c in calls)


def test_matching_loss_is_normalised_distance():
    start, target = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 3.0])
    final = torch.tensor([0.5, 1.0, 100.0])
    mask = torch.tensor([True, True, False])
    assert matching_loss(final, start, target, mask) == pytest.approx((0.25 + 1.0) / 5.0)


@pytest.mark.parametrize("group", ["backbone", "all"])
def test_tesla_fd_agrees_with_exact_tesla(group):
    """The finite-difference pass 2 equals the double-backward one up to O(step^2) (float64)."""
    layout, forward, images, labels, lr, start, target = problem(15)
    match = torch.ones(layout.num_params, dtype=bool) if group == "all" else layout.mask(group)
    steps = dsa_steps(N_IMG, 4, 3, seed=16)
    args = (forward, loss_for("prior_weighted_soft_ce"), images, labels, lr, start, target)
    exact = GRADIENT_MODES.get("tesla")(*args, steps, match)
    fd = GRADIENT_MODES.get("tesla_fd")(*args, steps, match)
    close(fd.loss, exact.loss)
    close(fd.lr, exact.lr)
    close(fd.images, exact.images, 1e-5)
    close(fd.labels, exact.labels, 1e-5)
    assert exact.images.abs().max() > 1e-3  # not vacuous


def test_tesla_fd_rejects_max_pooling():
    model = create_model("convnet", C, (1, 8, 8), seed=0, width=4, depth=1, pool="max")
    layout = ParamLayout.from_module(model)
    start = layout.flatten(model)
    images, labels = torch.randn(N_IMG, 1, 8, 8), torch.randn(N_IMG, C)
    with pytest.raises(UserError, match="MaxPool2d"):
        GRADIENT_MODES.get("tesla_fd")(
            Student(model, layout).forward,
            loss_for("soft_ce"),
            images,
            labels,
            torch.tensor(0.1),
            start,
            start + 0.01,
            dsa_steps(N_IMG, 4, 1, seed=3),
            layout.mask("backbone"),
        )


def test_tesla_fd_replaying_pass_1_patterns_is_bit_identical_to_recording_them_again():
    """Pass 1 records each step's ReLU patterns at W_i; pass 2 used to record them with an
    extra forward. Same patterns, so the same bits (float32, DSA-augmented steps)."""
    layout, forward, images, labels, lr, start, target = problem(21)
    args = (forward, loss_for("prior_weighted_soft_ce"), images.float(), labels.float())
    args += (lr.float(), start.float(), target.float(), dsa_steps(N_IMG, 4, 3, seed=22))
    match = layout.mask("backbone")
    model, _ = toy_model(C, dtype=torch.float32, seed=21)
    forward32 = Student(model, layout).forward
    args = (forward32, *args[1:])
    replayed = GRADIENT_MODES.get("tesla_fd")(*args, match)
    recorded_again = _tesla(MixedTerm(_fd_mixed), *args, match)
    for a, b in zip(
        (replayed.loss, replayed.images, replayed.labels, replayed.lr),
        (recorded_again.loss, recorded_again.images, recorded_again.labels, recorded_again.lr),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert replayed.images.abs().max() > 0  # not vacuous


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 8), (1,)])
def test_packed_patterns_restore_the_masks_exactly(shape):
    g = torch.Generator().manual_seed(sum(shape))
    masks = [(torch.randn(shape, generator=g) > 0).float(), torch.ones(shape, dtype=torch.float64)]
    packed = ActivationPatterns(masks).pack()
    assert sum(b.numel() for b in packed.bits) == 2 * -(-torch.Size(shape).numel() // 8)
    restored = packed.unpack().masks
    for a, b in zip(masks, restored, strict=True):
        assert torch.equal(a, b) and a.dtype == b.dtype
