"""bench_unilevel cites the science benchmark's rows only where their evaluation had the same
length as the shared protocol of the UL-LT rows they stand beside, a current cell's own row
before a kept or an ablation row."""

from __future__ import annotations

import json

from bench_support import load_benchmark


def science_row(method: str, epochs: int, mean: float) -> dict:
    return {
        "method": method,
        "beta": 100.0,
        "ipc": 10,
        "protocol": f"sets: fresh ConvNet per seed; {epochs} epochs",
        "balanced_accuracy": {"mean": mean, "std": 0.1, "runs": []},
    }


def test_current_rows_of_the_same_length_are_cited(tmp_path, monkeypatch):
    bench = load_benchmark("bench_unilevel", tmp_path, monkeypatch)
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    science = tmp_path / bench.SCIENCE_JSON
    science.parent.mkdir(parents=True)
    rows = [science_row(m, e, 70.0 + e / 100) for e in (300, 1000) for m in ("herding", "ltdd")]
    rows += [
        {**science_row("ltdd", 300, 60.0), "kept_from": "an earlier science.json"},
        science_row("ltdd (early; chosen on validation)", 300, 65.0),
    ]
    science.write_text(json.dumps({"rows": rows}))

    for epochs in (300, 1000):
        cited = {c["method"]: c["mean"] for c in bench.science_cited_rows(epochs)}
        assert cited == {"herding": 70.0 + epochs / 100, "ltdd": 70.0 + epochs / 100}
    assert bench.science_cited_rows(200) == []
    official = [c for c in bench.cited_rows(1000) if c["method"] == "ltdd-official"]
    assert official == []  # methods.md's LTDD rows are 300 epochs long
    assert len([c for c in bench.cited_rows(300) if c["method"] == "ltdd-official"]) == 2
