"""Debiased experts (spec §1.2): store conventions, per-epoch group accuracy, resume, ablation."""

import dataclasses
import json

import pytest
import torch
from unilevel_support import procedural

import ltdd.unilevel.experts as experts_mod
from ltdd.errors import UserError
from ltdd.unilevel.config import DebiasExpertConfig
from ltdd.unilevel.experts import ensure_experts, load_expert, per_epoch_metrics

CFG = DebiasExpertConfig(width=4, epochs=2, batch_size=256, proj_dim=8)


def test_store_manifest_metrics_and_reuse(tmp_path):
    data = procedural()
    folder = ensure_experts(CFG, data, tmp_path / "e", torch.device("cpu"), progress=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "ltdd-unilevel-experts/1" and len(manifest["experts"]) == 1
    assert manifest["experts"][0]["role"] == "observer+teacher"
    rows = per_epoch_metrics(folder)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all({"accuracy", "head", "medium", "tail"} <= set(r) for r in rows)
    net = load_expert(folder, "teacher", data, torch.device("cpu"))
    assert net(data.test_images[:4]).shape == (4, 10)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    mtime = (folder / "expert_0000.safetensors").stat().st_mtime
    ensure_experts(CFG, data, folder, torch.device("cpu"), progress=False)  # reused
    assert (folder / "expert_0000.safetensors").stat().st_mtime == mtime
    with pytest.raises(UserError, match="another configuration"):
        ensure_experts(dataclasses.replace(CFG, lr=0.1), data, folder, torch.device("cpu"), False)


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    data = procedural()
    cpu = torch.device("cpu")
    cfg = dataclasses.replace(CFG, heads="two", share_observer_teacher=False, epochs=2)
    whole = ensure_experts(cfg, data, tmp_path / "whole", cpu, progress=False)
    real_save = experts_mod._save_partial
    calls = {"n": 0}

    def crash_after_first_epoch(*args):
        real_save(*args)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(experts_mod, "_save_partial", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        ensure_experts(cfg, data, tmp_path / "cut", cpu, progress=False)
    monkeypatch.setattr(experts_mod, "_save_partial", real_save)
    resumed = ensure_experts(cfg, data, tmp_path / "cut", cpu, progress=False)
    for role in ("observer", "teacher"):
        a = load_expert(whole, role, data, cpu).state_dict()
        b = load_expert(resumed, role, data, cpu).state_dict()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert not (resumed / ".partial").exists()


def test_without_debiasing_trains_plain_cross_entropy(tmp_path, monkeypatch):
    data = procedural()
    seen = []
    real = experts_mod.debias_loss
    monkeypatch.setattr(experts_mod, "debias_loss", lambda *a: seen.append(1) or real(*a))
    cfg = dataclasses.replace(CFG, epochs=1, debias=False)
    ensure_experts(cfg, data, tmp_path / "plain", torch.device("cpu"), progress=False)
    assert not seen
    ensure_experts(
        dataclasses.replace(cfg, debias=True), data, tmp_path / "gl", torch.device("cpu"), False
    )
    assert seen
