"""Recovery (spec §1.5, check §6.5): the loss falls, pixels stay in range, class stats approach."""

import dataclasses

import torch
from unilevel_support import tiny_observer

from ltdd.unilevel.bnstats import bn_inputs, class_stats
from ltdd.unilevel.config import RecoverConfig
from ltdd.unilevel.recalibrate import recalibrate
from ltdd.unilevel.recover import alignment_loss, recover


def _class_gap(model, images, classes, targets):
    with torch.no_grad(), bn_inputs(model) as captured:
        model(images)
        gaps = []
        for layer, a in enumerate(captured):
            mean, var, _ = class_stats(a, classes, 3)
            gaps.append(
                (mean - targets.class_mean[layer]).norm() + (var - targets.class_var[layer]).norm()
            )
    return float(sum(gaps))


def test_recovery_lowers_the_loss_keeps_the_range_and_moves_class_stats_to_targets():
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(30)
    real = torch.randn(90, 1, 28, 28, generator=gen) * 0.5 + labels.float().view(-1, 1, 1, 1)
    model = tiny_observer(width=6)
    targets = recalibrate(model, real, labels, 3, 32)
    start = torch.randn(12, 1, 28, 28, generator=gen).clamp(-1, 1)
    classes = torch.arange(3).repeat(4)
    cfg = RecoverConfig(iterations=60, lr=0.05, batch_ipc=2)
    out, history = recover(model, start, classes, targets, 3, cfg, (-1.5, 3.0), seed=0)
    assert out.min() >= -1.5 and out.max() <= 3.0
    assert sum(history[-10:]) < 0.7 * sum(history[:10])
    assert _class_gap(model, out, classes, targets) < 0.7 * _class_gap(
        model, start, classes, targets
    )
    none, _ = recover(
        model, start, classes, targets, 3, dataclasses.replace(cfg, iterations=0), (-1, 1), 0
    )
    torch.testing.assert_close(none, start)


def test_alignment_loss_is_zero_on_matching_statistics_and_has_correct_gradients():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(6, 2, 3, 3, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    mean, var, _ = class_stats(a, labels, 3)
    from ltdd.unilevel.recalibrate import BNTargets, balanced_global

    gm, gv = balanced_global(mean, var, "mixture")
    targets = BNTargets([gm], [gv], [mean], [var], torch.tensor([2, 2, 2]))
    cfg = RecoverConfig()
    assert float(alignment_loss([a], labels, targets, 3, cfg)) < 1e-10
    shifted = BNTargets([gm + 0.3], [gv * 1.5], [mean - 0.2], [var + 0.4], targets.counts)
    x = a.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: alignment_loss([t], labels, shifted, 3, cfg), (x,))
