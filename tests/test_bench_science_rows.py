"""bench_science's set rows name the evaluation length the evaluation itself recorded, and refuse
a distillation gain whose two evaluations had different lengths (a run copied and half re-run)."""

from __future__ import annotations

import json

import pytest
from bench_support import load_benchmark

from ltdd.config import load_config
from ltdd.pipeline.config import RunConfig


def write_eval(path, mean: float, epochs: int, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    accuracy = {"mean": mean, "std": 0.0, "runs": [mean]}
    groups = {"tail": {"accuracy": {"mean": mean}}}
    balanced = {"accuracy": accuracy, "groups": groups}
    path.write_text(
        json.dumps({"balanced": balanced, "settings": {"train": {"epochs": epochs}}, **extra})
    )


def test_rows_take_the_length_from_the_evaluations(tmp_path, monkeypatch):
    bench = load_benchmark("bench_science", tmp_path / "results", monkeypatch)
    cfg = load_config(RunConfig, None, ["evaluate.train.epochs=300"])
    run = tmp_path / "run"
    write_eval(run / "eval" / "random.json", 0.70, 1000)
    write_eval(run / "eval" / "ltdd.json", 0.78, 1000)
    gain = {"mean": 3.0, "std": 0.1}
    write_eval(run / "eval" / "init" / "ltdd.json", 0.75, 1000, distillation_gain=gain)

    rows = bench.set_rows(run, cfg)

    assert [r["method"] for r in rows] == ["random", "ltdd"]
    assert all(r["protocol"].endswith("; 1000 epochs") for r in rows)
    assert rows[1]["distillation_gain"] == gain
    assert bench.evaluation_length(rows) == "1000 epochs"

    write_eval(run / "eval" / "init" / "ltdd.json", 0.75, 300, distillation_gain=gain)
    with pytest.raises(SystemExit, match="different lengths"):
        bench.set_rows(run, cfg)
