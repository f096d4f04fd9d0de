"""Import a script of benchmarks/ as a module under test, its results folder redirected."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str, results: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/<name>.py as a fresh module whose RESULTS folder is `results`."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", results)
    return module
