"""--keep of bench_science and bench_unilevel: an earlier report's rows survive for the cells not
read again (their run or work directories may be gone), and a cell read again replaces its rows."""

from __future__ import annotations

import json

from bench_support import load_benchmark


def _row(method: str, beta: float, ipc: int | None, mean: float) -> dict:
    return {
        "method": method,
        "beta": beta,
        "ipc": ipc,
        "balanced_accuracy": {"mean": mean, "std": 0.5, "runs": [mean - 0.5, mean + 0.5]},
        **({"run_dir": f"runs/b{beta:g}-ipc{ipc}"} if ipc else {}),
    }


def test_kept_rows_are_those_of_cells_not_read_again(tmp_path, monkeypatch):
    bench = load_benchmark("bench_science", tmp_path, monkeypatch)
    ablation = {**_row("ltdd early", 200.0, 10, 76.0), "run_dir": "runs/b200-ipc10-early"}
    old = [
        _row("random", 100.0, 10, 72.1),
        _row("ltdd", 100.0, 10, 77.2),
        _row("ltdd", 200.0, 10, 70.0),  # its run directory is read below: replaced
        ablation,  # another run directory of that cell: kept
        _row("full (experts)", 100.0, None, 74.1),
        _row("full (experts)", 200.0, None, 71.0),  # no folder, its β is read below: replaced
        # other experts of a β read below, named by their folder: kept beside the new bound
        {**_row("full (experts)", 200.0, None, 73.0), "run_dir": "runs/b200-ipc50-exp24"},
    ]
    path = tmp_path / "science.json"
    path.write_text(json.dumps({"command": "c", "machine": "m", "date": "d", "rows": old}))
    read_now = [
        _row("ltdd", 200.0, 10, 75.0),
        {**_row("full (experts)", 200.0, None, 72.0), "run_dir": "runs/b200-ipc10"},
        {**_row("datm", 100.0, 50, 72.0), "run_dir": "runs/b100-ipc50-datm"},  # no full rows
    ]

    kept = bench.kept_rows(path, read_now)

    assert [(r["method"], r["beta"]) for r in kept] == [
        ("random", 100.0),
        ("ltdd", 100.0),
        ("ltdd early", 200.0),
        ("full (experts)", 100.0),
        ("full (experts)", 200.0),
    ]
    assert all(r["kept_from"].endswith("science.json") for r in kept)
    text = "\n".join(bench.kept_lines(kept, path))
    assert "## β = 100, IPC 10: rows kept from" in text and "(`runs/b100-ipc10`" in text
    assert "| ltdd | 77.2 ± 0.5 (2) |" in text and "| ltdd early | 76.0 ± 0.5 (2) |" in text
    assert "| 100 | full (experts) | 74.1 ± 0.5 | `?` |" in text
    assert "| 200 | full (experts) | 73.0 ± 0.5 | `runs/b200-ipc50-exp24` |" in text


def test_unilevel_keeps_measured_rows_of_other_cells_and_drops_cited_ones(tmp_path, monkeypatch):
    bench = load_benchmark("bench_unilevel", tmp_path, monkeypatch)
    old = [
        {**_row("unilevel", 100.0, 10, 76.7), "session": "current"},
        {**_row("unilevel", 100.0, 10, 70.7), "session": "s11"},
        {**_row("unilevel", 200.0, 10, 71.0), "session": "current"},  # measured now: replaced
        {**_row("herding+teacher", 200.0, 10, 77.2), "session": "current"},  # not measured now
        {**_row("unilevel", 200.0, 10, 70.0), "session": "s10"},  # superseded history: kept
        {**_row("ltdd", 100.0, 10, 76.2), "source": "benchmarks/results/science.md"},  # cited
    ]
    path = tmp_path / "unilevel.json"
    path.write_text(json.dumps({"command": "c", "machine": "m", "date": "d", "rows": old}))

    kept = bench.kept_rows(path, [_row("unilevel", 200.0, 10, 76.6)])

    assert [(r["method"], r["beta"], r["session"]) for r in kept] == [
        ("unilevel", 100.0, "current"),
        ("unilevel", 100.0, "s11"),
        ("herding+teacher", 200.0, "current"),
        ("unilevel", 200.0, "s10"),
    ]


def test_unilevel_recovery_gain_pairs_rows_of_one_cell_across_sessions(tmp_path, monkeypatch):
    bench = load_benchmark("bench_unilevel", tmp_path, monkeypatch)
    full = {**_row("unilevel", 200.0, 10, 76.6), "variant": "full", "protocol": "shared"}
    recovered = {
        **_row("unilevel", 200.0, 10, 73.6),
        "variant": "with recovery (500 it., spec default)",
        "protocol": "shared",
        "ablation": "recovery",
    }
    other_cell = {**full, "beta": 100.0}

    bench.add_recovery_gains([full, recovered, other_cell])

    assert full["distillation_gain"]["note"] == "recovery off"
    assert recovered["distillation_gain"] == {"mean": -3.0, "std": 0.0}
    assert "distillation_gain" not in other_cell


def test_an_ablation_folder_gives_rows_for_its_distilled_methods_only(tmp_path, monkeypatch):
    from types import SimpleNamespace

    bench = load_benchmark("bench_science", tmp_path, monkeypatch)
    run = tmp_path / "runs" / "b100-ipc10-it200"
    acc = {"mean": 0.77, "std": 0.01, "runs": [0.76, 0.78]}
    for method in ("random", "herding", "ltdd"):
        ev = {
            "balanced": {"accuracy": acc, "groups": {"tail": {"accuracy": acc}}},
            "settings": {"train": {"epochs": 300}},
        }
        (run / "eval").mkdir(parents=True, exist_ok=True)
        (run / "eval" / f"{method}.json").write_text(json.dumps(ev))
    cfg = SimpleNamespace(
        data=SimpleNamespace(dataset="fashion-mnist", imbalance_factor=100.0),
        ipc=10,
    )

    cell = bench.set_rows(run, cfg)
    ablation = bench.set_rows(run, cfg, "ltdd (200 it.)")

    assert [r["method"] for r in cell] == ["random", "herding", "ltdd"]
    assert [r["method"] for r in ablation] == ["ltdd (200 it.)"]
    assert ablation[0]["balanced_accuracy"]["mean"] == 77.0
