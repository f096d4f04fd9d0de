"""The benchmarks' `swap_validation`: another validation split, preprocessed as the run's data,
with the run's training images left exactly as they were."""

from __future__ import annotations

import torch
from bench_support import load_benchmark

from ltdd.data.dataset import DataConfig, prepare_data, split_longtail
from ltdd.data.sources import load_source


def test_swap_validation_replaces_only_the_validation_split(tmp_path, monkeypatch):
    common = load_benchmark("common", tmp_path / "results", monkeypatch)
    data = prepare_data(DataConfig(dataset="procedural", imbalance_factor=10, val_per_class=2))
    held = DataConfig(
        dataset="procedural", imbalance_factor=10, val_per_class=5, val_from="held-out"
    )
    swapped = common.swap_validation(data, held)

    assert torch.equal(swapped.train_images, data.train_images)
    assert torch.equal(swapped.test_images, data.test_images)
    assert swapped.preprocessing is data.preprocessing
    source = load_source("procedural")
    indices = split_longtail(source, held).val_indices
    expected = data.preprocessing.transform(source.train_images[indices])
    torch.testing.assert_close(swapped.val_images, expected)
    assert swapped.val_labels.tolist() == source.train_labels[indices].tolist()
    assert common.swap_validation(data, None) is data
