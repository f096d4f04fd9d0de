"""`ltdd run` with method `unilevel`: a soft-label set, both protocols, reuse, ablation configs."""

import json
from pathlib import Path

import pytest
import torch

from ltdd.config import load_config
from ltdd.distilled import DistilledSet
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run
from ltdd.unilevel.config import UnilevelConfig
from ltdd.unilevel.synthesize import without

ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "ipc=3",
    "methods=[random, unilevel]",
    "data.dataset=procedural",
    "data.imbalance_factor=10",
    "unilevel.experts={width: 4, epochs: 1, batch_size: 256, proj_dim: 8}",
    "unilevel.init={max_images_per_class: 20, crops_per_image: 2}",
    "unilevel.recover={iterations: 3}",
    "unilevel.relabel={adsa: true}",
    "unilevel.edc={enabled: true, epochs: 2, seeds: 1, width: 4}",
    "evaluate.seeds=1",
    "evaluate.train={epochs: 2, width: 4}",
    "evaluate.full_data=false",
]


def test_unilevel_runs_in_the_pipeline_with_both_protocols_and_is_reused(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(RunConfig, None, [*BASE, f"runs_dir={tmp_path}"])
    r = Run(cfg, progress=False)
    r.run()
    s = DistilledSet.load(r.dir / "distill" / "unilevel" / "distilled.safetensors")
    assert s.label_kind == "soft" and s.labels.shape == (30, 10)
    assert torch.bincount(s.class_ids).tolist() == [3] * 10
    assert s.meta["method"] == "unilevel" and "adsa_tau" in s.meta["unilevel"]["relabel"]
    shared = json.loads((r.dir / "eval" / "unilevel.json").read_text())
    edc = json.loads((r.dir / "eval" / "unilevel-edc.json").read_text())
    assert edc["settings"]["protocol"] == "edc" and edc["settings"]["labels"] == "online"
    assert "balanced" in shared and "balanced" in edc
    timings = json.loads((r.dir / "distill" / "unilevel" / "timings.json").read_text())
    assert set(timings) == {"experts", "recalibration", "initialisation", "recovery", "relabel"}
    again = Run(cfg, progress=False)
    again.run()
    assert not any(not t["reused"] for t in again.timings.values())


def test_each_ablation_switches_exactly_its_component():
    base = UnilevelConfig()
    assert without(base, "debiasing").experts.debias is False
    assert without(base, "recalibration").recalibration.mode == "ema"
    assert without(base, "initialisation").init.mode == "random"
    assert without(base, "recovery").recover.iterations == 0
    assert without(base, "adsa").relabel.adsa is not base.relabel.adsa
    assert without(base, "layerwise").recalibration.passes == "single"
    off = without(base, "recovery")
    assert without(off, "recovery").recover.iterations == base.recover.iterations > 0
    assert without(without(base, "layerwise"), "layerwise") == base
    names = ("debiasing", "recalibration", "initialisation", "recovery", "adsa", "layerwise")
    for name in names:
        changed = [k for k in vars(base) if getattr(base, k) != getattr(without(base, name), k)]
        assert len(changed) == 1, (name, changed)


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "configs" / "unilevel").glob("*.yaml"))
    + [ROOT / "configs/run/unilevel-fmnist.yaml"],
    ids=lambda p: p.name,
)
def test_paper_scale_and_cpu_configs_load_and_name_the_method(path):
    cfg = load_config(RunConfig, path)
    assert "unilevel" in cfg.methods
    assert cfg.unilevel.experts.model.endswith("_bn")  # the observer needs batch norm
