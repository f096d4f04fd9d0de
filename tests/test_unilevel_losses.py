"""GLMC/UL-LT expert losses (spec §1.2, check §6.3) and the mixed views."""

import torch
import torch.nn.functional as F

from ltdd.evaluate.trainer import soft_cross_entropy
from ltdd.unilevel.losses import class_weights, cumulative_alpha, debias_loss, robust_loss
from ltdd.unilevel.mixing import cutmix, cutmix_box, mixed_target


def test_debias_loss_with_q_zero_is_plain_soft_label_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=gen)
    target = torch.softmax(torch.randn(16, 5, generator=gen), dim=1)
    w = class_weights([100, 50, 20, 5, 1], q=0.0)
    torch.testing.assert_close(w, torch.ones(5))
    for alpha in (0.0, 0.3, 1.0):
        want = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        torch.testing.assert_close(debias_loss(logits, target, w, alpha), want)
    onehot_target = F.one_hot(torch.arange(16) % 5, 5).float()
    torch.testing.assert_close(
        debias_loss(logits, onehot_target, w, 0.5), F.cross_entropy(logits, torch.arange(16) % 5)
    )


def test_alpha_schedule_and_weight_normalisations():
    assert cumulative_alpha(0, 700) == 0.0 and cumulative_alpha(700, 700) == 1.0
    assert abs(cumulative_alpha(350, 700) - 0.25) < 1e-12
    counts = [1000, 100, 10]
    mean_one = class_weights(counts, q=1.0)
    sum_one = class_weights(counts, q=1.0, norm="sum_one")
    torch.testing.assert_close(mean_one.mean(), torch.tensor(1.0))
    torch.testing.assert_close(sum_one.sum(), torch.tensor(1.0))
    torch.testing.assert_close(mean_one[2] / mean_one[0], torch.tensor(100.0))


def test_reweighted_term_at_alpha_one_weights_each_sample_by_its_class():
    logits = torch.zeros(2, 3)
    target = F.one_hot(torch.tensor([0, 2]), 3).float()
    w = torch.tensor([0.5, 1.0, 1.5])
    want = torch.log(torch.tensor(3.0)) * (0.5 + 1.5) / 2
    torch.testing.assert_close(debias_loss(logits, target, w, 1.0), want)
    balanced = torch.tensor([[5.0, 0, 0], [0, 0, 5.0]])
    got = debias_loss(logits, target, w, 1.0, balanced_logits=balanced)
    torch.testing.assert_close(got, (soft_ce(balanced, target) * w).sum(1).mean())


def soft_ce(logits, target):
    return -target * F.log_softmax(logits, dim=1)


def test_robust_loss_stop_gradient_placement():
    """SimSiam/GLMC form trains the prediction layer; the printed form never reaches it (R2)."""
    gen = torch.Generator().manual_seed(1)
    h1, h2 = torch.randn(8, 6, generator=gen), torch.randn(8, 6, generator=gen)
    proj, pred = torch.nn.Linear(6, 4), torch.nn.Linear(4, 4)
    for form, pred_gets_grad in (("simsiam", True), ("paper", False)):
        proj.zero_grad(), pred.zero_grad()
        z1, z2 = proj(h1), proj(h2)
        robust_loss(z1, z2, pred(z1), pred(z2), form).backward()
        assert (pred.weight.grad is not None and pred.weight.grad.abs().sum() > 0) == pred_gets_grad
        assert proj.weight.grad.abs().sum() > 0
    z = torch.randn(4, 3)
    assert torch.isclose(robust_loss(z, z, z, z), torch.tensor(-2.0))


def test_soft_ce_agrees_with_the_evaluation_trainer():
    logits, t = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(
        debias_loss(logits, torch.softmax(t, 1), torch.ones(3), 0.0), soft_cross_entropy(logits, t)
    )


def test_cutmix_box_area_and_mixed_target():
    gen = torch.Generator().manual_seed(0)
    x, other = torch.zeros(2, 1, 28, 28), torch.ones(2, 1, 28, 28)
    top, bottom, left, right = cutmix_box(28, 28, 0.75, gen)
    assert 0 <= top <= bottom <= 28 and 0 <= left <= right <= 28
    assert bottom - top <= 14 and right - left <= 14
    mixed = cutmix(x, other, (top, bottom, left, right))
    assert mixed.sum() == 2 * (bottom - top) * (right - left)
    target = mixed_target(torch.tensor([0, 1]), torch.tensor([1, 1]), 0.25, 3)
    torch.testing.assert_close(target, torch.tensor([[0.25, 0.75, 0.0], [0.0, 1.0, 0.0]]))
