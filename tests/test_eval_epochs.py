"""benchmarks/eval_epochs.py: a run's sets scored on the validation split at several evaluation
lengths, with the evaluation's own networks, against an independent recomputation."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch
from bench_support import load_benchmark
from sklearn.metrics import balanced_accuracy_score

from ltdd.config import load_config
from ltdd.distilled import DistilledSet
from ltdd.evaluate.trainer import predict, train_network
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run

TINY = [
    "name=tiny",
    "ipc=2",
    "methods=[random, ltdd]",
    "data.dataset=procedural",
    "data.imbalance_factor=10",
    "data.val_per_class=4",
    "share_experts=true",
    "experts.representation={num_experts: 1, epochs: 3, width: 4, batch_size: 256}",
    "experts.classifier={num_experts: 1, epochs: 2, width: 4, batch_size: 256}",
    "distill.ltdd={iterations: 1, width: 4, phase1: {syn_steps: 2, max_start_epoch: 1},"
    " phase2: {syn_steps: 2}}",
    "evaluate.seeds=2",
    "evaluate.train={epochs: 1, width: 4}",
    "evaluate.full_data=false",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = load_config(RunConfig, None, [*TINY, f"runs_dir={tmp_path_factory.mktemp('runs')}"])
    run = Run(cfg, progress=False)
    run.run()
    return run


def main(module, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["eval_epochs.py", *map(str, argv)])
    module.main()


def test_scores_are_the_evaluation_networks_on_validation_and_a_rerun_trains_none(
    finished_run, tmp_path, monkeypatch
):
    module = load_benchmark("eval_epochs", tmp_path, monkeypatch)
    run_dir = finished_run.cfg.run_dir
    argv = ["--run", run_dir, "--sets", "random"]
    main(module, monkeypatch, *argv, "ltdd@init", "--epochs", 1, 3, "--seeds", 2, "--out", "t")

    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [(r["set"], r["epochs"]) for r in rows] == [
        ("random", 1),
        ("random", 3),
        ("ltdd@init", 1),
        ("ltdd@init", 3),
    ]
    assert rows[0]["gain_over_first"] == 0
    data = finished_run.prepare()
    chosen = DistilledSet.load(run_dir / "distill" / "random" / "distilled.safetensors")
    train = dataclasses.replace(finished_run.cfg.evaluate.train, epochs=3)
    for seed in (0, 1):
        model = train_network(
            chosen.images,
            chosen.labels,
            chosen.lr,
            data.num_classes,
            train,
            seed,
            torch.device("cpu"),
        )
        expected = 100 * balanced_accuracy_score(
            data.val_labels.numpy(), predict(model, data.val_images)
        )
        assert rows[1]["val_balanced_accuracy"]["runs"][seed] == pytest.approx(expected)

    log = run_dir / "tune" / "eval-epochs.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == 8
    main(module, monkeypatch, *argv, "--epochs", 3, "--seeds", 2, "--out", "t2")
    assert log.read_text().splitlines() == lines


def test_an_unknown_set_is_one_line_before_any_training(
    finished_run, tmp_path, monkeypatch, capsys
):
    module = load_benchmark("eval_epochs", tmp_path, monkeypatch)
    run_dir = finished_run.cfg.run_dir
    argv = ["--run", run_dir, "--epochs", 1, "--out", "t"]
    for bad in ("mtt", "random@final"):
        with pytest.raises(SystemExit) as exit_info:
            main(module, monkeypatch, *argv, "--sets", bad)
        assert exit_info.value.code == 2
        assert bad in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(module, monkeypatch, *argv, "--sets", "random", "--val-split", "data.val_per_class=0")
    assert "validation split is empty" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()
