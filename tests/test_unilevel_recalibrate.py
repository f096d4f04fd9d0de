"""Fair BN recalibration (spec §1.3, checks §6.1-6.2): exact pooled statistics, balanced targets."""

import pytest
import torch
from unilevel_support import tiny_observer

from ltdd.unilevel.bnstats import bn_inputs
from ltdd.unilevel.recalibrate import balanced_global, recalibrate


def _data(counts, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    shift = torch.randn(len(counts), 1, 1, 1, generator=gen)[labels]
    images = torch.randn(len(labels), 1, 28, 28, generator=gen) * 0.7 + shift
    return images, labels


def _oracle(model, images, labels, num_classes):
    """Per layer: per-class pooled mean/var straight from all class-c BN inputs at once."""
    with torch.no_grad(), bn_inputs(model) as captured:
        model(images)
        acts = [a.double() for a in captured]
    out = []
    for a in acts:
        means = torch.stack([a[labels == c].mean(dim=(0, 2, 3)) for c in range(num_classes)])
        var = torch.stack(
            [a[labels == c].var(dim=(0, 2, 3), unbiased=False) for c in range(num_classes)]
        )
        out.append((means, var, a))
    return out


@pytest.mark.parametrize("batch_size,seed", [(7, 0), (50, 1), (1000, 2)])
def test_class_statistics_equal_the_exact_pooled_ones_for_any_batch_order(batch_size, seed):
    torch.set_num_threads(1)
    counts = [60, 23, 9, 4]
    images, labels = _data(counts)
    model = tiny_observer()
    oracle = _oracle(model, images, labels, 4)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    t = recalibrate(model, images, labels, 4, batch_size, write_buffers=False, order=order)
    for layer, (mean, var, _) in enumerate(oracle):
        torch.testing.assert_close(t.class_mean[layer].double(), mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t.class_var[layer].double(), var, atol=1e-5, rtol=1e-5)
    assert t.counts.tolist() == counts


def test_balanced_global_variance_equals_a_class_resampled_dataset():
    torch.set_num_threads(1)
    counts = [6, 3, 2]  # replicate to 6 each: x1, x2, x3
    images, labels = _data(counts, seed=3)
    model = tiny_observer(1)
    t = recalibrate(model, images, labels, 3, 4, write_buffers=False)
    reps = torch.cat(
        [torch.nonzero(labels == c).squeeze(1).repeat(6 // n) for c, n in enumerate(counts)]
    )
    for layer, (_, _, a) in enumerate(_oracle(model, images, labels, 3)):
        balanced = a[reps]
        torch.testing.assert_close(
            t.global_mean[layer].double(), balanced.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            t.global_var[layer].double(),
            balanced.var(dim=(0, 2, 3), unbiased=False),
            atol=1e-5,
            rtol=1e-5,
        )


def test_paper_variance_is_the_mean_within_class_variance_and_smaller():
    mean = torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
    var = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    _, paper = balanced_global(mean, var, "paper")
    _, mixture = balanced_global(mean, var, "mixture")
    torch.testing.assert_close(paper, torch.tensor([2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(mixture, paper + torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_buffers_are_written_and_the_ema_ablation_depends_on_batch_order():
    torch.set_num_threads(1)
    images, labels = _data([40, 20, 10])
    model = tiny_observer()
    t = recalibrate(model, images, labels, 3, 8)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    torch.testing.assert_close(bn[0].running_mean, t.global_mean[0])
    torch.testing.assert_close(bn[0].running_var, t.global_var[0])
    ema = [
        recalibrate(
            tiny_observer(),
            images,
            labels,
            3,
            8,
            mode="ema",
            order=torch.randperm(70, generator=torch.Generator().manual_seed(s)),
        )  # fmt: skip
        for s in (0, 1)
    ]
    assert not torch.allclose(ema[0].class_mean[0], ema[1].class_mean[0])
    fresh = tiny_observer()
    bn_fresh = [m for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    torch.testing.assert_close(ema[0].global_mean[0], bn_fresh[0].running_mean)


def _scrambled_observer() -> torch.nn.Module:
    """A tiny observer whose trained BN buffers are far from the data's statistics."""
    model = tiny_observer(2)
    gen = torch.Generator().manual_seed(5)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 2)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) * 4 + 0.1)
    return model


def test_layerwise_targets_are_what_the_recalibrated_observer_shows_on_real_data():
    torch.set_num_threads(1)
    images, labels = _data([30, 12, 5], seed=4)
    model = _scrambled_observer()
    t = recalibrate(model, images, labels, 3, 7, passes="layerwise")
    # oracle: one forward of all data through the observer with its new buffers
    for layer, (mean, var, _) in enumerate(_oracle(model, images, labels, 3)):
        torch.testing.assert_close(t.class_mean[layer].double(), mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t.class_var[layer].double(), var, atol=1e-5, rtol=1e-5)
        mu, v = balanced_global(mean, var, "mixture")
        torch.testing.assert_close(t.global_mean[layer].double(), mu, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t.global_var[layer].double(), v, atol=1e-5, rtol=1e-5)


def test_single_pass_targets_of_deeper_layers_miss_the_recalibrated_observer():
    torch.set_num_threads(1)
    images, labels = _data([30, 12, 5], seed=4)
    model = _scrambled_observer()
    t = recalibrate(model, images, labels, 3, 7, passes="single")
    oracle = _oracle(model, images, labels, 3)
    torch.testing.assert_close(t.class_mean[0].double(), oracle[0][0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(t.class_mean[1].double(), oracle[1][0], atol=1e-2)


def test_statistics_subset_caps_each_class_and_keeps_small_classes_whole():
    import dataclasses

    from unilevel_support import procedural

    from ltdd.unilevel.config import RecalibrationConfig, UnilevelConfig
    from ltdd.unilevel.synthesize import statistics_subset

    data = procedural()
    counts = torch.bincount(data.train_labels, minlength=10)
    cfg = UnilevelConfig(recalibration=RecalibrationConfig(max_images_per_class=int(counts[4])))
    images, labels = statistics_subset(cfg, data)
    got = torch.bincount(labels, minlength=10)
    assert got.tolist() == torch.clamp(counts, max=int(counts[4])).tolist()
    # the subset's images are the dataset's own rows (no copies with other labels)
    rows = {tuple(x.flatten()[:20].tolist()) for x in data.train_images}
    assert all(tuple(x.flatten()[:20].tolist()) in rows for x in images[:20])
    whole = statistics_subset(dataclasses.replace(cfg, recalibration=RecalibrationConfig()), data)
    assert whole[0] is data.train_images
