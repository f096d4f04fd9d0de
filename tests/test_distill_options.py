"""Issue 9's second round of options: the evaluation learning rate scale and the per-class
normalisation of the image gradient, each against an independent computation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from distill_toy import one_thread, toy_data, toy_experts
from test_distill_engine import config

from ltdd.distill import distill
from ltdd.distill.classnorm import normalise_image_gradient
from ltdd.distill.diagnostics import read_metrics
from ltdd.distill.engine import INITIAL, METRICS
from ltdd.io import load_tensors

_single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def data():
    return toy_data()


@pytest.fixture(scope="module")
def experts(data):
    return toy_experts(data)


def test_class_normalisation_gives_every_class_the_mean_norm():
    g = torch.Generator().manual_seed(0)
    ipc, classes = 3, 4
    grad = torch.randn(classes * ipc, 1, 5, 5, generator=g, dtype=torch.float64)
    grad[:ipc] *= 100.0  # a "head" class with a much larger gradient
    grad[-ipc:] = 0.0  # a class that got no gradient at all
    out = normalise_image_gradient(grad, ipc, "class")
    norms = [float(grad[c * ipc : (c + 1) * ipc].norm()) for c in range(classes)]
    target = sum(norms) / classes
    for c in range(classes):
        block, new = grad[c * ipc : (c + 1) * ipc], out[c * ipc : (c + 1) * ipc]
        if norms[c] == 0:
            assert torch.equal(new, block)
            continue
        assert float(new.norm()) == pytest.approx(target, rel=1e-12)
        # same direction within the class: a positive multiple of the original block
        ratio = new.flatten() / block.flatten()
        assert torch.allclose(ratio, ratio[0].expand_as(ratio)) and float(ratio[0]) > 0
    assert torch.equal(normalise_image_gradient(grad, ipc, "none"), grad)
    with pytest.raises(ValueError):
        normalise_image_gradient(grad, ipc, "sample")


def test_class_normalisation_reaches_the_image_update(data, experts, tmp_path):
    """One iteration, lr_img momentum-free first step: with `class` every class's image change
    is the same multiple of its initial norm ratio as the normalised gradient says."""
    base = config("ltdd", iterations=1)
    runs = {}
    for mode in ("none", "class"):
        cfg = dataclasses.replace(base, image_grad_norm=mode)
        final, _ = load_tensors(distill(cfg, data, experts, tmp_path / mode, progress=False))
        initial, _ = load_tensors(tmp_path / mode / INITIAL)
        runs[mode] = (final["images"] - initial["images"]).double()
    ipc = base.ipc
    step = {m: d.reshape(-1, ipc * d[0].numel()).norm(dim=1) for m, d in runs.items()}
    assert float(step["none"].std()) > 0  # the official update moves classes unequally
    assert torch.allclose(step["class"], step["class"].mean().expand_as(step["class"]), rtol=1e-4)
    # the first SGD step is -lr_img * gradient: the class update is the rescaled official one
    expected = normalise_image_gradient(runs["none"], ipc, "class")
    assert torch.allclose(runs["class"], expected, rtol=1e-3, atol=1e-7)


def test_eval_lr_scale_multiplies_the_stored_and_validated_rate(data, experts, tmp_path):
    cfg = config("ltdd", iterations=1, lr_init=0.2, lr_lr=0.0, eval_lr_scale=0.1)
    final, meta = load_tensors(distill(cfg, data, experts, tmp_path, progress=False))
    initial, _ = load_tensors(tmp_path / INITIAL)
    assert float(initial["lr"]) == pytest.approx(0.02) and float(final["lr"]) == pytest.approx(0.02)
    assert meta["phase_lr"] == pytest.approx([0.2])  # alpha itself is kept unscaled
    assert meta["config"]["eval_lr_scale"] == 0.1
    (rec,) = read_metrics(tmp_path / METRICS)
    assert rec["lr"] == pytest.approx(0.02) and rec["phase_lr"] == pytest.approx([0.2, 0.2])


def test_herding_init_starts_from_the_herding_choice(data, experts, tmp_path):
    """Every class block holds real images of its class, and its first image is the one whose
    features lie closest to the class mean (herding's first pick, computed here by brute force
    on the features of the first phase's expert 0 at its last epoch); classes with fewer real
    images than IPC repeat them."""
    from distill_toy import MODEL

    from ltdd.select import extract_features, model_from_flat

    cfg = config("ltdd", iterations=1, image_init="herding", ipc=3)
    distill(cfg, data, experts, tmp_path, progress=False)
    initial, meta = load_tensors(tmp_path / INITIAL)
    source = experts["representation"]
    flat = source.snapshot(0, source.epochs[-1])
    model = model_from_flat("convnet", data.num_classes, data.image_shape, flat, **MODEL)
    feats = extract_features(model, data.train_images).double()
    for c, count in enumerate(data.train_counts):
        block = initial["images"][c * 3 : (c + 1) * 3]
        pool = torch.nonzero(data.train_labels == c).flatten()
        members = data.train_images[pool]
        for image in block:  # each one is a real image of class c
            assert (members - image).flatten(1).abs().amax(1).min() == 0
        f = feats[pool]
        first = pool[int((f - f.mean(0)).norm(dim=1).argmin())]
        assert torch.equal(block[0], data.train_images[first])
        if count < 3:
            assert torch.equal(block[count], block[0])
    record = meta["init"]
    assert record["selection"] == "herding"
    assert record["real_per_class"] == [min(3, n) for n in data.train_counts]
