"""The engine end to end on a tiny problem: every method steps finitely and reproducibly,
resume equals an uninterrupted run, divergence stops cleanly, bad setups are user errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from distill_toy import MODEL, MemorySource, one_thread, toy_data, toy_experts

from ltdd.config import from_dict
from ltdd.distill import METHODS, DistillConfig, PhaseConfig, distill
from ltdd.distill.engine import CHECKPOINT, DISTILLED, METRICS
from ltdd.errors import UserError
from ltdd.io import load_tensors

_single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def data():
    return toy_data()


@pytest.fixture(scope="module")
def experts(data):
    return toy_experts(data)


def config(method: str, **changes) -> DistillConfig:
    cfg = DistillConfig(
        method=method,
        ipc=2,
        iterations=2,
        batch_syn=5,
        lr_img=10.0,
        lr_lr=1e-4,
        checkpoint_every=1,
        phase1=PhaseConfig(
            syn_steps=3,
            min_start_epoch=0,
            current_max_start_epoch=1,
            max_start_epoch=3,
            sequential_generation=True,
            expansion_end_epoch=2,
        ),
        phase2=PhaseConfig(
            syn_steps=2,
            min_start_epoch=0,
            current_max_start_epoch=0,
            max_start_epoch=1,
            sequential_generation=True,
            weight=0.5,
        ),
        **MODEL,
    )
    return dataclasses.replace(cfg, **changes)


@pytest.mark.parametrize("method", METHODS.names())
def test_one_step_is_finite_and_bit_identical(method, data, experts, tmp_path):
    cfg = config(method, iterations=1)
    a = distill(cfg, data, experts, tmp_path / "a", progress=False)
    b = distill(cfg, data, experts, tmp_path / "b", progress=False)
    assert a.read_bytes() == b.read_bytes()
    tensors, meta = load_tensors(a)
    assert all(torch.isfinite(t.float()).all() for t in tensors.values())
    m = METHODS.get(method)()
    assert meta["method"] == method and meta["label_kind"] == m.label_kind
    assert meta["ipc"] == 2 and meta["dataset"] == "toy" and meta["model"]["width"] == 4
    n = 2 * data.num_classes
    assert tensors["images"].shape == (n, *data.image_shape)
    if m.label_kind == "hard":
        assert tensors["labels"].dtype == torch.int64 and tensors["labels"].shape == (n,)
    else:
        assert tensors["labels"].shape == (n, data.num_classes)
    assert tensors["lr"].shape == () and tensors["lr"] > 0
    assert meta["init"]["fill_policy"] == "duplicate"
    (record,) = [json.loads(x) for x in (tmp_path / "a" / METRICS).read_text().splitlines()]
    assert record["iteration"] == 1 and len(record["start_epochs"]) == len(m.phases)
    assert record["seconds"] > 0 and record["lr"] == pytest.approx(float(tensors["lr"]))


def test_images_labels_and_lr_move(data, experts, tmp_path):
    cfg = config("ltdd", iterations=1)
    first = load_tensors(distill(cfg, data, experts, tmp_path / "one", progress=False))[0]
    cfg0 = config("ltdd", iterations=1, lr_img=1e-12, lr_label=1e-12, lr_lr=0.0)
    still = load_tensors(distill(cfg0, data, experts, tmp_path / "zero", progress=False))[0]
    assert not torch.equal(first["images"], still["images"])
    assert not torch.equal(first["labels"], still["labels"])
    assert first["lr"] != still["lr"] and still["lr"] == pytest.approx(0.01)


def test_checkpoint_of_another_config_is_refused(data, experts, tmp_path):
    distill(config("ltdd", iterations=1), data, experts, tmp_path, progress=False)
    (tmp_path / DISTILLED).unlink()
    with pytest.raises(UserError, match="different distillation config"):
        distill(config("ltdd", lr_img=5.0), data, experts, tmp_path, progress=False)


def test_finished_run_is_not_redone(data, experts, tmp_path):
    cfg = config("ltdd", iterations=1)
    out = distill(cfg, data, experts, tmp_path, progress=False)
    stamp = out.stat().st_mtime_ns
    assert distill(cfg, data, {}, tmp_path, progress=False) == out
    assert out.stat().st_mtime_ns == stamp


def test_killed_and_resumed_run_is_byte_identical(data, experts, tmp_path):
    cfg = config("ltdd", iterations=4, checkpoint_every=2)
    whole = distill(cfg, data, experts, tmp_path / "whole", progress=False)

    class Killed(Exception):
        pass

    class Killer(MemorySource):
        """Dies on the first snapshot read of iteration 4 (after the checkpoint at 2)."""

        def __init__(self, inner, reads):
            super().__init__(inner.snapshots)
            self.reads = reads

        def snapshot(self, expert, epoch):
            self.reads[0] -= 1
            if self.reads[0] < 0:
                raise Killed
            return super().snapshot(expert, epoch)

    # 2 size checks + 4 init reads (1 image selector, 3 label experts) + 4 per iteration:
    # killed in phase 2 of iteration 3, after the checkpoint at iteration 2.
    reads = [2 + 4 + 4 * 2 + 2]
    killer = {k: Killer(v, reads) for k, v in experts.items()}
    with pytest.raises(Killed):
        distill(cfg, data, killer, tmp_path / "part", progress=False)
    assert load_tensors(tmp_path / "part" / CHECKPOINT)[1]["iteration"] == 2
    resumed = distill(cfg, data, experts, tmp_path / "part", progress=False)
    assert resumed.read_bytes() == whole.read_bytes()
    lines = (tmp_path / "part" / METRICS).read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2, 3, 4]


def test_nan_stops_cleanly_and_keeps_last_checkpoint(data, experts, tmp_path):
    class Poisoned(MemorySource):
        """Returns NaN snapshots from the 11th read on: iteration 2's first phase."""

        reads = 0

        def snapshot(self, expert, epoch):
            Poisoned.reads += 1
            out = super().snapshot(expert, epoch)
            return out if Poisoned.reads <= 10 else out * float("nan")

    poisoned = {k: Poisoned(v.snapshots) for k, v in experts.items()}
    with pytest.raises(UserError) as err:
        distill(config("ltdd", iterations=4), data, poisoned, tmp_path, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "diverged at iteration 2: matching loss is nan" in msg
    assert f"(iteration 1) is kept in {tmp_path / CHECKPOINT}" in msg and "lower lr_img" in msg
    assert not (tmp_path / DISTILLED).exists()
    tensors, meta = load_tensors(tmp_path / CHECKPOINT)
    assert meta["iteration"] == 1
    assert all(torch.isfinite(t.float()).all() for t in tensors.values())


def test_runaway_learning_rate_stops(data, experts, tmp_path):
    with pytest.raises(UserError, match="diverged at iteration"):
        distill(config("mtt", iterations=5, lr_lr=1e9), data, experts, tmp_path, progress=False)


def test_missing_experts_and_short_trajectories_are_user_errors(data, experts, tmp_path):
    with pytest.raises(UserError, match="needs classifier experts"):
        distill(config("ltdd"), data, {"representation": experts["representation"]}, tmp_path)
    long = config("ltdd", phase1=PhaseConfig(max_start_epoch=5))
    with pytest.raises(UserError, match="phase1 needs expert epochs 0...6 .* lack epoch 6"):
        distill(long, data, experts, tmp_path, progress=False)
    with pytest.raises(UserError, match="unknown method 'dc'; known: datm, ltdd, mtt"):
        distill(config("dc"), data, experts, tmp_path, progress=False)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("ipc", 0, "ipc must be >= 1"),
        ("gradient", "exact", "gradient must be one of tesla, tesla_fd, unrolled"),
        ("fill", "copy", "fill must be one of duplicate, duplicate_jitter, noise"),
        ("lr_img", -1, "lr_img must be > 0"),
        ("threshold", 0, "threshold must be > 0"),
    ],
)
def test_bad_config_values(key, value, message):
    with pytest.raises(UserError, match=message):
        from_dict(DistillConfig, {key: value})
    with pytest.raises(UserError, match="phase1.syn_steps must be >= 1"):
        from_dict(DistillConfig, {"phase1": {"syn_steps": 0}})


def test_threshold_gate_skips_the_update(data, experts, tmp_path):
    cfg = config("datm", iterations=1, threshold=1e-9)
    out = load_tensors(distill(cfg, data, experts, tmp_path, progress=False))[0]
    (record,) = [json.loads(x) for x in (tmp_path / METRICS).read_text().splitlines()]
    assert record["updated"] is False and record["loss"] > 1e-9
    assert out["lr"] == torch.tensor(0.01)


def test_validation_accuracy_is_logged_from_the_validation_split(data, experts, tmp_path):
    with pytest.raises(UserError, match="needs a validation split: set data.val_per_class"):
        distill(config("mtt", eval_every=1), data, experts, tmp_path, progress=False)
    with_val = dataclasses.replace(data, val_images=data.train_images, val_labels=data.train_labels)
    cfg = config("mtt", iterations=2, eval_every=2, eval_epochs=1)
    distill(cfg, with_val, experts, tmp_path, progress=False)
    lines = [json.loads(x) for x in (tmp_path / METRICS).read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [0, 1, 2]  # iteration 0: the initial set
    assert 0.0 <= lines[0]["val_balanced_accuracy"] <= 1.0
    assert "val_balanced_accuracy" not in lines[1]
    assert 0.0 <= lines[2]["val_balanced_accuracy"] <= 1.0


def test_image_init_override(data, experts, tmp_path):
    cfg = config("ltdd", iterations=1, image_init="random_real")
    meta = load_tensors(distill(cfg, data, experts, tmp_path / "a", progress=False))[1]
    assert meta["init"]["selection"] == "random_real"
    with pytest.raises(UserError, match="method mtt has none; use image_init: random_real"):
        distill(config("mtt", image_init="correct_real"), data, experts, tmp_path / "b")


@pytest.mark.parametrize("method", METHODS.names())
def test_registered_methods_are_valid_configurations(method):
    m = METHODS.get(method)()
    assert m.phases and m.gradient in ("tesla", "unrolled")
    for phase in m.phases:
        assert (phase.inner_loss == "ce") == (m.label_kind == "hard")
    with pytest.raises(ValueError, match="slot match must be one of all, backbone, classifier"):
        dataclasses.replace(m.phases[0], match="head")


def test_more_iterations_continue_the_checkpoint(data, experts, tmp_path):
    fresh = distill(config("mtt", iterations=3), data, experts, tmp_path / "a", progress=False)
    distill(config("mtt", iterations=2), data, experts, tmp_path / "b", progress=False)
    more = distill(config("mtt", iterations=3), data, experts, tmp_path / "b", progress=False)
    assert more.read_bytes() == fresh.read_bytes()
