"""The vectorised evaluation trainers of benchmarks/bench_multiseed.py train each seed as
`train_network` does (same init, batch order, DSA draws): their timings compare equal work."""

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_multiseed.py"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_multiseed_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.set_num_threads(1)
    return module


def test_each_vectorised_seed_is_the_sequential_run_of_that_seed(bench):
    rows = bench.agreement(2)
    assert {(r["mode"], r["labels"]) for r in rows} == {
        (m, k) for m in ("vmap", "packed") for k in ("hard", "soft")
    }
    for row in rows:
        assert row["max_abs_weight_diff"] < 1e-5
        assert row["max_abs_training_change"] > 1e-2  # training moved the weights


def test_swapped_seeds_do_not_agree(bench):
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(20, 1, 28, 28, generator=g), torch.arange(20) % 10
    cfg = bench.TrainConfig(width=4, epochs=1, batch_size=8)
    ref = bench.sequential(images, labels, 0.01, cfg, [0, 1])
    swapped = bench.train_seeds(images, labels, 0.01, cfg, [1, 0], "packed")
    assert (swapped - ref).abs().max() > 1e-2
    assert (swapped.flip(0) - ref).abs().max() < 1e-5
