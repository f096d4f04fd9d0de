"""tune_distill's `--milestones`: a grid trial stopped at several iteration counts is one run
(each snapshot equals an uninterrupted run of that many iterations), and each snapshot's paired
validation gain is its score minus the iteration-0 set's, seed by seed."""

from __future__ import annotations

import dataclasses
import json
from argparse import Namespace

import pytest
import torch
from bench_support import load_benchmark
from distill_toy import one_thread, toy_data, toy_experts
from test_distill_engine import config

from ltdd.distill import distill
from ltdd.distill.engine import INITIAL
from ltdd.io import load_tensors

_threads = pytest.fixture(autouse=True, scope="module")(one_thread)


@pytest.fixture
def tune(tmp_path, monkeypatch):
    return load_benchmark("tune_distill", tmp_path / "results", monkeypatch)


@pytest.fixture(scope="module")
def data():
    return toy_data()


@pytest.fixture(scope="module")
def experts(data):
    return toy_experts(data)


def fake_score(images: torch.Tensor, seed: int) -> float:
    """A deterministic stand-in for a validation network: depends on the set and the seed."""
    return float(images.double().abs().sum() % 1.0) * 0.5 + (seed % 7) * 0.01


def grid_args(tmp_path, text: str, **changes) -> Namespace:
    """tune_distill's arguments for a hand grid (written to tmp_path) of 4-iteration trials."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    values = dict(
        grid=grid,
        only=None,
        milestones=[],
        val_seeds=1,
        method="ltdd",
        iterations=4,
        eval_every=0,
        eval_epochs=0,
        val_split=[],
        run_dir=tmp_path,
        config=grid,
        out="tune-test",
    )
    return Namespace(**{**values, **changes})


def test_milestone_stops(tune):
    assert tune.milestone_stops([50, 100, 400, 0], 200) == [50, 100, 200]
    assert tune.milestone_stops([], 40) == [40]
    assert tune.snapshot_name(50) == "it-0050.safetensors"


def test_milestones_are_one_run_scored_at_each_stop(tune, data, experts, tmp_path, monkeypatch):
    seeds_seen: list[int] = []

    def fake_validation(images, labels, lr, cfg, data, device, seed):
        seeds_seen.append(seed)
        return fake_score(images, seed)

    monkeypatch.setattr(tune, "validation_accuracy", fake_validation)
    base = config("ltdd", iterations=4)
    args = grid_args(tmp_path, "t: {lr_init: 0.02}\n", milestones=[2], val_seeds=2)
    tune.run_grid(args, base, data, experts, tmp_path / "tune")
    trial = tmp_path / "tune" / "grid" / "t"
    initial = load_tensors(trial / INITIAL)[0]["images"]
    val = json.loads((trial / "val.json").read_text())
    seeds = sorted(set(seeds_seen))
    assert len(seeds) == 2
    for n in (2, 4):
        # oracle: an uninterrupted distillation of n iterations with the trial's values
        ref_cfg = dataclasses.replace(base, iterations=n, lr_init=0.02)
        ref = distill(ref_cfg, data, experts, tmp_path / f"ref{n}", progress=False)
        snap = load_tensors(trial / f"it-000{n}.safetensors")[0]
        assert torch.equal(snap["images"], load_tensors(ref)[0]["images"])
        assert torch.equal(snap["labels"], load_tensors(ref)[0]["labels"])
        expected = [100 * (fake_score(snap["images"], s) - fake_score(initial, s)) for s in seeds]
        got = val["milestones"][f"it-000{n}.safetensors"]["gains"]
        assert got == pytest.approx(expected, abs=1e-9)
    assert not torch.equal(initial, snap["images"])  # the snapshots did move
    assert val["final"] == val["milestones"]["it-0004.safetensors"]["final"]
    assert val["gains"] == pytest.approx(expected, abs=1e-9)
    # 3 sets x 2 seeds scored once each; a rerun reuses every score, snapshot and the run
    assert len(seeds_seen) == 6
    tune.run_grid(args, base, data, experts, tmp_path / "tune")
    assert len(seeds_seen) == 6
    kept = load_tensors(trial / "it-0002.safetensors")[0]["images"]
    assert torch.equal(kept, load_tensors(tmp_path / "ref2" / "distilled.safetensors")[0]["images"])
    # one more seed: only the new network of each set is trained, the old scores are kept
    before = json.loads((trial / "val.json").read_text())
    tune.run_grid(
        Namespace(**{**vars(args), "val_seeds": 3}), base, data, experts, trial.parent.parent
    )
    assert len(seeds_seen) == 9
    after = json.loads((trial / "val.json").read_text())
    assert after["initial"][:2] == before["initial"] and len(after["gains"]) == 3
    table = (tmp_path / "results" / "tune-test.md").read_text()
    assert "@2 " in table and "@4 " in table
    # a milestone the run has already passed cannot be made: an error, not a mislabelled set
    with pytest.raises(SystemExit, match="already at iteration 4"):
        tune.run_grid(
            Namespace(**{**vars(args), "milestones": [1, 2]}),
            base,
            data,
            experts,
            trial.parent.parent,
        )


def test_a_trial_s_own_iterations_replace_the_command_s(tune, data, experts, tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "validation_accuracy", lambda *a: fake_score(a[0], a[-1]))
    args = grid_args(
        tmp_path, "short: {iterations: 2}\nlong: {lr_init: 0.02}\n", only=["short"], out="tune-own"
    )
    tune.run_grid(args, config("ltdd", iterations=4), data, experts, tmp_path / "tune")
    final = tmp_path / "tune" / "grid" / "short" / "distilled.safetensors"
    assert load_tensors(final)[1]["iterations"] == 2
    (record,) = json.loads((tmp_path / "results" / "tune-own.json").read_text())["trials"]
    assert record["state"] == "COMPLETE"  # finished at its own count, not at --iterations 4
