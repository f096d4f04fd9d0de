"""DAM class weights and the inner losses (reference §5.6, §10 check 8)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ltdd.distill.losses import (
    INNER_LOSSES,
    class_prior,
    inner_loss,
    prior_weighted_soft_ce,
    soft_ce,
)
from ltdd.errors import UserError


def test_dam_weights_are_the_class_prior():
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10 beta 100
    w = class_prior(counts)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(w * sum(counts), torch.tensor(counts, dtype=torch.float64))
    assert [round(v, 3) for v in w[:3].tolist()] == [0.403, 0.242, 0.145]  # reference §5.6


def test_soft_ce_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    target = torch.tensor([[0.0, 1.0, 0.0]])
    q = torch.exp(target) / torch.exp(target).sum()
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    assert soft_ce(logits, target) == pytest.approx(float(-(q * log_p).sum()))


def test_uniform_weights_give_soft_ce_over_c():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    uniform = torch.full((5,), 1 / 5)
    assert prior_weighted_soft_ce(logits, target, uniform) == pytest.approx(
        float(soft_ce(logits, target)) / 5, rel=1e-6
    )


def test_weights_multiply_the_class_axis_of_the_target():
    g = torch.Generator().manual_seed(1)
    logits, target = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    w = torch.tensor([0.7, 0.2, 0.1])
    by_hand = -(w * F.softmax(target, 1) * F.log_softmax(logits, 1)).sum(1).mean()
    assert prior_weighted_soft_ce(logits, target, w) == pytest.approx(float(by_hand), rel=1e-6)
    per_sample = -(F.softmax(target, 1) * F.log_softmax(logits, 1)).sum(1)
    assert not torch.isclose(prior_weighted_soft_ce(logits, target, w), per_sample.mean())


def test_named_losses():
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    hard = torch.tensor([0, 3, 1])
    assert inner_loss("ce", [4, 3, 2, 1])(logits, hard) == F.cross_entropy(logits, hard)
    assert set(INNER_LOSSES.names()) == {"ce", "soft_ce", "prior_weighted_soft_ce"}
    with pytest.raises(UserError, match="unknown inner loss 'dam'; known: ce, prior_weighted"):
        inner_loss("dam", [1, 1])


def test_mean_normalised_dam_weights_are_c_times_the_prior():
    counts = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]  # Fashion-MNIST beta 100
    w = class_prior(counts, "mean")
    assert w.mean().item() == pytest.approx(1.0, abs=1e-12)
    by_hand = torch.tensor([10 * n / sum(counts) for n in counts], dtype=torch.float64)
    assert torch.allclose(w, by_hand)
    with pytest.raises(ValueError, match="normalise"):
        class_prior(counts, "max")


def test_mean_normalised_dam_loss_and_gradient_are_c_times_the_official():
    counts = [8, 4, 2, 1]
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=g, requires_grad=True)
    target = torch.randn(5, 4, generator=g)
    official = inner_loss("prior_weighted_soft_ce", counts)(logits, target)
    mean_one = inner_loss("prior_weighted_soft_ce", counts, "mean")(logits, target)
    assert float(mean_one.detach()) == pytest.approx(4 * float(official.detach()), rel=1e-6)
    (g_official,) = torch.autograd.grad(official, logits)
    (g_mean,) = torch.autograd.grad(mean_one, logits)
    assert torch.allclose(g_mean, 4 * g_official, atol=1e-6)
    # uniform counts with mean-1 weights: exactly the plain soft CE
    uniform = inner_loss("prior_weighted_soft_ce", [3, 3, 3, 3], "mean")(logits, target)
    assert float(uniform.detach()) == pytest.approx(
        float(soft_ce(logits, target).detach()), rel=1e-6
    )
