"""Every shipped run and experts config loads and passes the cross-field checks."""

from pathlib import Path

import pytest

from ltdd.commands import ExpertsCommandConfig
from ltdd.config import load_config
from ltdd.pipeline.config import RunConfig, check_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "run").glob("*.yaml")), ids=lambda p: p.name)
def test_run_configs_load(path):
    cfg = load_config(RunConfig, path)
    check_run_config(cfg)
    assert cfg.methods


@pytest.mark.parametrize("path", sorted((CONFIGS / "experts").glob("*.yaml")), ids=lambda p: p.name)
def test_experts_configs_load(path):
    cfg = load_config(ExpertsCommandConfig, path)
    assert cfg.experts.resolved().epochs >= 1
