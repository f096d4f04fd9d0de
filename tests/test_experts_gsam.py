"""GSAM + SGD of the vectorised engine against a hand-written per-tensor reference.

The reference follows `buffer/gsam/gsam.py` literally: per-tensor norms stacked into a global
norm, in-place perturbation and restoration, gradient decomposition, then `torch.optim.SGD`.
"""

import pytest
import torch
import torch.nn.functional as F

from ltdd.experts import gsam
from ltdd.experts.trainer import Engine

from experts_support import (
    SHAPE,
    single_thread,  # noqa: F401 (autouse fixture)
    tiny_config,
)

EPS = 1e-12


def reference_steps(model, params, x, y, cfg, steps):
    """`steps` GSAM+SGD updates of `model` (only `params` train) on one batch."""
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if cfg.gsam:
            old_g = [p.grad.clone() for p in params]
            weights = [p.abs() if cfg.adaptive else 1.0 for p in params]
            norm = torch.stack(
                [(w * p.grad).norm(2) for w, p in zip(weights, params, strict=True)]
            ).norm(2)
            scale = cfg.rho / (norm + EPS)
            perturb = []
            with torch.no_grad():
                for p in params:
                    e_w = p.grad * scale
                    if cfg.adaptive:
                        e_w *= p.pow(2)
                    p.add_(e_w)
                    perturb.append(e_w)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            inner = sum((g * p.grad).sum() for g, p in zip(old_g, params, strict=True))
            new_norm = torch.stack([p.grad.norm(2) for p in params]).norm(2)
            old_norm = torch.stack([g.norm(2) for g in old_g]).norm(2)
            cosine = inner / (new_norm * old_norm + EPS)
            with torch.no_grad():
                for g, p, e_w in zip(old_g, params, perturb, strict=True):
                    vertical = g - cosine * old_norm * p.grad / (new_norm + EPS)
                    p.grad.add_(vertical, alpha=-cfg.gsam_alpha)
                    p.sub_(e_w)
        opt.step()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"adaptive": False, "momentum": 0.9},
        {"gsam": False, "momentum": 0.5, "weight_decay": 0.01},
        {"kind": "classifier", "momentum": 0.9, "weight_decay": 1e-3, "rho": 0.5},
    ],
)
@pytest.mark.parametrize("k", [1, 2])  # K = 1: plain autograd; K = 2: vmap
def test_engine_step_matches_per_tensor_reference(overrides, k):
    cfg = tiny_config(**overrides).resolved()
    engine = Engine(cfg, 3, SHAPE, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    batch, steps = 12, 3
    w0 = torch.stack([engine.init_params(s) for s in (11, 12)[:k]])
    x = torch.randn(k, batch, *SHAPE, generator=gen)
    y = torch.randint(0, 3, (k, batch), generator=gen)
    frozen, w = w0[:, : engine.start], w0[:, engine.start :]
    buf = torch.zeros_like(w)
    tau = torch.full((k,), float("nan"))
    for _ in range(steps):
        w, buf, tau, _ = engine.step(w, frozen, buf, tau, x, y)
    layout = engine.layout
    for i in range(k):
        model = engine.build_model(seed=0)
        with torch.no_grad():
            for (name, p), value in zip(
                model.named_parameters(), layout.unflatten(w0[i]).values(), strict=True
            ):
                p.copy_(value)
                p.requires_grad_(not cfg.trains_classifier_only or name.startswith("classifier."))
        params = [p for p in model.parameters() if p.requires_grad]
        reference_steps(model, params, x[i], y[i], cfg, steps)
        expected = layout.flatten(model)
        got = torch.cat([frozen[i], w[i]])
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6), (got - expected).abs().max()
        assert not torch.equal(got, w0[i])
        if cfg.trains_classifier_only:
            assert torch.equal(got[: engine.start], w0[i][: engine.start])


def test_decompose_by_hand():
    g = torch.tensor([3.0, 0.0])
    g_s = torch.tensor([0.0, 2.0])
    assert torch.allclose(gsam.decompose(g, g_s, 0.3), torch.tensor([-0.9, 2.0]))
    parallel = gsam.decompose(g, 2 * g, 0.3)  # no orthogonal part: final = g_s
    assert torch.allclose(parallel, 2 * g)


def test_adaptive_perturbation_by_hand():
    w = torch.tensor([2.0, -1.0])
    g = torch.tensor([1.0, 4.0])
    # ‖|w|⊙g‖ = ‖(2, 4)‖ = √20; e = ρ/√20 · g ⊙ w²
    expected = 0.1 / 20**0.5 * torch.tensor([4.0, 4.0])
    assert torch.allclose(gsam.perturbation(w, g, 0.1, adaptive=True), expected)
    assert torch.allclose(gsam.perturbation(w, g, 0.1, adaptive=False), 0.1 * g / 17**0.5)
