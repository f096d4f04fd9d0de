"""alpha_control's 2 × 2: each cell keeps one set's images and labels and takes one set's α."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "alpha_control.py"


def _module(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("alpha_control_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_swap_only_alpha(monkeypatch):
    cells = _module(monkeypatch).cells
    initial = {"images": torch.zeros(2, 1), "labels": torch.ones(2, 3), "lr": torch.tensor(0.01)}
    final = {"images": torch.ones(2, 1), "labels": torch.zeros(2, 3), "lr": torch.tensor(0.05)}
    sets = cells(initial, final)
    assert list(sets)[:2] == ["initial set, initial α", "final set, final α"]
    for name, source in (("initial set, initial α", initial), ("final set, final α", final)):
        images, labels, lr = sets[name]
        assert images is source["images"] and labels is source["labels"]
        assert lr == pytest.approx(float(source["lr"]))
    images, labels, lr = sets["initial set, final α"]
    assert images is initial["images"] and labels is initial["labels"] and lr == pytest.approx(0.05)
    images, labels, lr = sets["final set, initial α"]
    assert images is final["images"] and labels is final["labels"] and lr == pytest.approx(0.01)
