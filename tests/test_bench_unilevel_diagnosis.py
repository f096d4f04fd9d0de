"""bench_unilevel's table of diagnose_unilevel.py results: multi-seed experiments (`inits/`,
`edc/`) are grouped per variant with their per-seed scores and mean."""

from __future__ import annotations

import json

from bench_support import load_benchmark


def test_edc_rows_are_grouped_per_variant_with_their_mean(tmp_path, monkeypatch):
    bench = load_benchmark("bench_unilevel", tmp_path, monkeypatch)
    rows = {
        f"edc/unilevel.edc.epochs={e} seed={s} beta=100 ipc=10": {"val": v}
        for e, vals in ((300, (0.74, 0.72)), (1000, (0.78, 0.80)))
        for s, v in enumerate(vals)
    }
    (tmp_path / "diagnose.json").write_text(json.dumps(rows))

    text = bench.diagnosis_table([tmp_path])

    assert "| edc/unilevel.edc.epochs=300 beta=100 ipc=10 | 74.0 / 72.0 | 73.0 |" in text
    assert "| edc/unilevel.edc.epochs=1000 beta=100 ipc=10 | 78.0 / 80.0 | 79.0 |" in text
    assert "seed=0" not in text  # no per-student rows for grouped experiments
