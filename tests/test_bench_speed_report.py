"""bench_speed's report path: partial results of several helpers merged into one speed.json with
the four stages, ratios computed within rounds, and the official-code bridge."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench_support import load_benchmark


@pytest.fixture
def bench(tmp_path, monkeypatch):
    return load_benchmark("bench_speed", tmp_path, monkeypatch)


def _result(wall, cpu, scale=10.0, images=1000, **extra):
    return {
        "samples": wall,
        "cpu_samples": cpu,
        "scale": scale,
        "measured": "m",
        "images": images,
        "peak_rss_mb": 100.0,
        "loadavg": "3.0 2.0 1.0",
        "command": "cmd",
        **extra,
    }


def _write(path: Path, items: list[tuple[tuple, dict]]) -> None:
    path.write_text(json.dumps([{"key": list(k), "result": r} for k, r in items]))


def test_merged_report_has_every_stage_and_round_paired_ratios(bench, tmp_path, monkeypatch):
    phases = {"phase_samples": [[1.0], [1.0]], "phase_cpu_samples": [[1.0], [0.5]]}
    base_phases = {"phase_samples": [[3.0], [2.0]], "phase_cpu_samples": [[3.0], [1.0]]}
    mine = [
        (("official", "representation_epoch", "-", "base"), _result([4.0], [2.0])),
        (
            ("official", "representation_epoch", "-", "new"),
            _result([2.0], [1.0], anchor_samples=[0.5], anchor_cpu_samples=[0.25]),
        ),
        (("official", "representation_epoch", "-", "base"), _result([9.0], [3.0])),
        (("official", "representation_epoch", "-", "new"), _result([3.0], [1.0])),
        (("official", "distill_iteration", "tesla", "base"), _result([5.0], [4.0], **base_phases)),
        (("official", "distill_iteration", "tesla", "new"), _result([2.0], [1.5], **phases)),
    ]
    other = [
        (("official", "classifier_epoch", "-", "base"), _result([6.0], [6.0])),
        (("official", "classifier_epoch", "-", "new"), _result([2.0], [2.0])),
        (("official", "evaluate_seed", "-", "new"), _result([1.0], [1.0])),
    ]
    _write(tmp_path / "mine.partial.json", mine)
    _write(tmp_path / "other.partial.json", other)
    argv = ["bench_speed.py", "--report-only", "--out", "speed", "--merge", "mine", "other"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    out = json.loads((tmp_path / "speed.json").read_text())
    rows = {r["stage"]: r for r in out["rows"]}
    assert set(rows) == {
        "representation_epoch",
        "classifier_epoch",
        "distill_iteration",
        "evaluate_seed",
    }
    assert "cores" in out["machine"] and "thread" in out["machine"]
    rep = rows["representation_epoch"]
    assert rep["ratio_base_per_round"] == [2.0, 3.0]  # within each round, not 6.5 / 2.5
    assert rep["ratio_base"] == 2.5 and rep["ratio_base_cpu"] == 2.5
    issue = bench.ISSUE["representation_epoch"]
    assert rep["ratio_official"] == pytest.approx(issue["official"] / issue["base"] * 2.5, abs=1e-3)
    # stage: median 2.5 s per 1/10 unit over 1000 image-steps; anchor 0.5 s per 256 images
    assert rep["ratio_anchor"] == pytest.approx(2.0 * 10 / 1000 / (0.5 / 256), abs=1e-3)
    dist = rows["distill_iteration"]
    assert dist["phase1_ratio_base"] == 3.0 and dist["phase2_ratio_base_cpu"] == 2.0
    assert dist["phase1_ratio_official"] == pytest.approx(37.8 / 37.7 * 3.0, abs=1e-3)
    assert "ratio_official" in rows["classifier_epoch"]
    assert "ratio_base" not in rows["evaluate_seed"]
    assert "| classifier_epoch |" in (tmp_path / "speed.md").read_text()


def test_compile_variant_is_new_only_and_compared_with_the_eager_base(bench, tmp_path, monkeypatch):
    assert bench.plan(["official"], ["classifier_epoch"]) == [
        ("official", "classifier_epoch", "-", "base"),
        ("official", "classifier_epoch", "-", "new"),
        ("official", "classifier_epoch", "compile", "new"),
    ]
    first = {"first_step_seconds": 9.0, "first_step_seconds_cpu": 8.0}
    items = [
        (("official", "classifier_epoch", "-", "base"), _result([6.0], [6.0])),
        (("official", "classifier_epoch", "-", "new"), _result([2.0], [2.0])),
        (("official", "classifier_epoch", "compile", "new"), _result([1.5], [1.0], **first)),
    ]
    _write(tmp_path / "cls.partial.json", items)
    argv = ["bench_speed.py", "--report-only", "--out", "speed", "--merge", "cls"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    rows = {r["settings"]: r for r in json.loads((tmp_path / "speed.json").read_text())["rows"]}
    compiled = rows["official: width 128, compile"]
    assert compiled["ratio_base"] == 4.0 and compiled["ratio_base_cpu"] == 6.0
    assert compiled["first_step_seconds_cpu_per_round"] == [8.0]
    assert rows["official: width 128"]["ratio_base"] == 3.0
    assert "first step (one-off set-up included)" in (tmp_path / "speed.md").read_text()
