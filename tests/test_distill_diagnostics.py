"""Issue 9's options and diagnostics: per-phase alpha, mean-1 DAM weights, lr_img scaled with
IPC, the iteration-0 set, per-class image change, the distillation gain, balanced re-sampling."""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch
from distill_toy import one_thread, toy_data, toy_experts
from test_distill_engine import config

from ltdd.distill import distill
from ltdd.distill.diagnostics import normalised_phase_losses, read_metrics, summarize
from ltdd.distill.engine import (
    INITIAL,
    METRICS,
    build_student,
    plan_phases,
    resolve_method,
)
from ltdd.evaluate.balanced import balanced_indices
from ltdd.evaluate.gain import distillation_gain
from ltdd.io import load_tensors

_single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def data():
    return toy_data()


@pytest.fixture(scope="module")
def experts(data):
    return toy_experts(data)


def test_per_phase_alpha_splits_the_shared_alpha_update(data, experts, tmp_path):
    """First SGD step from equal alphas: the per-phase updates add up to the shared update, and
    the images move identically (each phase's student saw the same alpha)."""
    shared = config("ltdd", iterations=1, lr_lr=1e-3)
    split = dataclasses.replace(shared, lr_per_phase=True)
    a, _ = load_tensors(distill(shared, data, experts, tmp_path / "a", progress=False))
    b, meta = load_tensors(distill(split, data, experts, tmp_path / "b", progress=False))
    assert torch.allclose(a["images"], b["images"], atol=1e-6)
    (rec,) = read_metrics(tmp_path / "b" / METRICS)
    moves = [alpha - 0.01 for alpha in rec["phase_lr"]]
    assert len(moves) == 2 and all(m != 0 for m in moves) and moves[0] != moves[1]
    assert sum(moves) == pytest.approx(float(a["lr"]) - 0.01, rel=1e-4)
    # the set's evaluation rate is phase 1's alpha; every alpha is kept in the metadata
    assert float(b["lr"]) == pytest.approx(rec["phase_lr"][0])
    assert meta["phase_lr"] == pytest.approx(rec["phase_lr"])


def test_per_phase_alpha_starts_from_each_phase_lr_init(data, experts, tmp_path):
    base = config("ltdd", iterations=1, lr_per_phase=True, lr_lr=0.0)
    cfg = dataclasses.replace(base, phase2=dataclasses.replace(base.phase2, lr_init=0.03))
    distill(cfg, data, experts, tmp_path, progress=False)
    (rec,) = read_metrics(tmp_path / METRICS)
    assert rec["phase_lr"] == pytest.approx([0.01, 0.03])


def test_mean_dam_weights_reach_the_engine_phase_loss(data, experts):
    """The DAM phase's inner loss is C times the official one with `dam_weights: mean`; the
    classifier phase's plain soft CE is unchanged."""
    losses = {}
    for norm in ("sum", "mean"):
        cfg = config("ltdd", dam_weights=norm)
        method, _ = resolve_method(cfg)
        student = build_student(cfg, data, torch.device("cpu"))
        plans = plan_phases(method, cfg, experts, student, data.train_counts, torch.device("cpu"))
        losses[norm] = [plan.loss_fn for plan in plans]
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    dam = [float(losses[n][0](logits, target)) for n in ("sum", "mean")]
    assert dam[1] == pytest.approx(data.num_classes * dam[0], rel=1e-6)
    cls = [float(losses[n][1](logits, target)) for n in ("sum", "mean")]
    assert cls[0] == pytest.approx(cls[1])


def test_lr_img_scaled_with_ipc():
    cfg = config("ltdd", lr_img=100.0, ipc=50)
    assert cfg.image_lr == 100.0  # official: as given
    assert dataclasses.replace(cfg, lr_img_reference_ipc=10).image_lr == pytest.approx(500.0)
    assert dataclasses.replace(cfg, ipc=10, lr_img_reference_ipc=10).image_lr == 100.0


def test_initial_set_and_image_change_are_recorded(data, experts, tmp_path):
    cfg = config("ltdd", iterations=2)
    final, meta = load_tensors(distill(cfg, data, experts, tmp_path, progress=False))
    initial, init_meta = load_tensors(tmp_path / INITIAL)
    assert init_meta["iterations"] == 0 and meta["iterations"] == 2
    assert init_meta["init"] == meta["init"]
    assert float(initial["lr"]) == pytest.approx(0.01)
    rows = read_metrics(tmp_path / METRICS)
    ipc = cfg.ipc
    for c, change in enumerate(rows[-1]["image_change"]):
        x0 = initial["images"][c * ipc : (c + 1) * ipc].double()
        xt = final["images"][c * ipc : (c + 1) * ipc].double()
        by_hand = float(((xt - x0) ** 2).sum().sqrt() / (x0**2).sum().sqrt())
        assert change == pytest.approx(by_hand, rel=1e-5)
    assert max(rows[-1]["image_change"]) > 0
    summary = summarize(rows, meta["init"])
    assert summary["iterations"] == 2 and summary["init"]["fill_policy"] == "duplicate"
    assert summary["image_change_final"] == rows[-1]["image_change"]


def test_phase_losses_are_normalised_to_their_first_value():
    rows = [
        {"iteration": 0, "val_balanced_accuracy": 0.5},
        {"iteration": 1, "phase_matching_losses": [2.0, 0.5]},
        {"iteration": 2, "phase_matching_losses": [1.0, 0.25]},
        {"iteration": 3, "phase_matching_losses": [3.0, 0.5]},
    ]
    assert normalised_phase_losses(rows) == [[1.0, 0.5, 1.5], [1.0, 0.5, 1.0]]
    summary = summarize(rows)
    assert summary["phase_loss_last_over_first"] == [1.5, 1.0]
    assert summary["phase_loss_min_over_first"] == [0.5, 0.5]
    assert summary["validation"] == [(0, 0.5)]


def test_gain_is_the_paired_per_seed_difference_in_points():
    final, initial = [0.80, 0.82, 0.81], [0.75, 0.80, 0.78]
    gain = distillation_gain(final, initial)
    diffs = [100 * (f - i) for f, i in zip(final, initial, strict=True)]
    assert gain["runs"] == pytest.approx(diffs)
    assert gain["mean"] == pytest.approx(statistics.fmean(diffs))
    assert gain["std"] == pytest.approx(statistics.pstdev(diffs))
    assert distillation_gain([0.5], [0.6])["mean"] == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="same non-zero number"):
        distillation_gain([0.5, 0.6], [0.5])


def test_balanced_indices_repeat_every_class_to_the_largest():
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    idx = balanced_indices(labels, 5)  # class 4 has no image
    counts = torch.bincount(labels[idx], minlength=5).tolist()
    assert counts == [5, 5, 5, 5, 0]
    assert set(idx.tolist()) == set(range(len(labels)))  # every image is used
    ones = idx[labels[idx] == 1].tolist()
    assert sorted(set(ones)) == [5, 6] and abs(ones.count(5) - ones.count(6)) <= 1
