"""Trajectory store: layout, lazy reads, dtype, checksums, refusal of damaged files, no rewrites."""

import json

import pytest
import torch
from safetensors import safe_open

from ltdd.errors import UserError
from ltdd.experts import TrajectoryStore, estimate, summary_table, train_experts
from ltdd.io import save_tensors, sha256_file

from experts_support import (
    single_thread,  # noqa: F401 (autouse fixture)
    tiny_config,
    tiny_data,
)

DATA_INFO = {"num_classes": 3, "image_shape": [1, 8, 8], "train_counts": [24, 12, 6]}


@pytest.fixture()
def store(tmp_path):
    return train_experts(
        tiny_config(num_experts=2, epochs=3), tiny_data(), tmp_path / "s", progress=False
    )


def assert_one_line_error(exc_info, path):
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message and "delete" in message


def test_manifest_and_files(store):
    m = store.manifest
    assert m["kind"] == "representation" and m["dtype"] == "float32"
    assert store.epochs == [0, 1, 2, 3] and store.num_experts == 2
    assert m["config"]["epochs"] == 3 and m["config"]["lr"] == 0.01  # resolved, not None
    assert len(m["config_hash"]) == 64 and len(m["data_fingerprint"]) == 64
    assert store.num_params == sum(torch.Size(s).numel() for s in m["layout"]["shapes"])
    for i, entry in enumerate(m["experts"]):
        path = store.directory / entry["file"]
        assert entry["file"] == f"expert_{i:04d}.safetensors"
        assert entry["sha256"] == sha256_file(path)
        assert 0 <= entry["metrics"]["accuracy"] <= 1
        with safe_open(str(path), framework="pt") as handle:
            assert sorted(handle.keys()) == [f"epoch_{e:04d}" for e in range(4)]
    store.verify()
    assert torch.equal(store.final(1), store.snapshot(1, 3))
    assert not (store.directory / ".partial").exists()
    assert "| mean |" in summary_table(store)


def test_reads_one_file_lazily(store):
    (store.directory / "expert_0001.safetensors").unlink()
    snap = store.snapshot(0, 2)
    assert snap.dtype == torch.float32 and snap.shape == (store.num_params,)


def test_bfloat16_subset_keeps_float32_final(tmp_path):
    cfg = tiny_config(num_experts=1, epochs=3, dtype="bfloat16", save_epochs=[0, 2])
    store = train_experts(cfg, tiny_data(), tmp_path / "bf", progress=False)
    path = store.path(0)
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["epoch_0000", "epoch_0002", "final"]
        assert handle.get_tensor("epoch_0002").dtype == torch.bfloat16
        assert handle.get_tensor("final").dtype == torch.float32
    assert store.snapshot(0, 2).dtype == torch.float32
    with pytest.raises(UserError, match="epoch 1 is not stored; kept epochs: 0, 2"):
        store.snapshot(0, 1)
    store.verify()
    size = path.stat().st_size
    assert abs(size - estimate(cfg, DATA_INFO)["disk_bytes"]) < 512


def test_corrupted_file_refused(store):
    path = store.path(0)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError) as exc_info:
        store.verify()
    assert_one_line_error(exc_info, path)
    assert "sha256" in str(exc_info.value)


def test_truncated_file_refused(store):
    path = store.path(1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError) as exc_info:
        store.snapshot(1, 0)
    assert_one_line_error(exc_info, path)
    with pytest.raises(UserError) as exc_info:
        store.verify()
    assert_one_line_error(exc_info, path)


def test_wrong_shape_refused(store):
    path = store.path(0)
    p = store.num_params
    save_tensors(path, {f"epoch_{e:04d}": torch.zeros(p - 1) for e in range(4)}, {})
    manifest = json.loads((store.directory / "manifest.json").read_text())
    manifest["experts"][0]["sha256"] = sha256_file(path)
    (store.directory / "manifest.json").write_text(json.dumps(manifest))
    store = TrajectoryStore(store.directory)
    with pytest.raises(UserError, match="shape") as exc_info:
        store.snapshot(0, 1)
    assert_one_line_error(exc_info, path)
    with pytest.raises(UserError, match="wrong shape") as exc_info:
        store.verify()


def test_missing_manifest_and_other_config_refused(store, tmp_path):
    with pytest.raises(UserError, match="no manifest.json"):
        TrajectoryStore(tmp_path)
    with pytest.raises(UserError, match="another configuration"):
        train_experts(tiny_config(num_experts=2, epochs=3, lr=0.02), tiny_data(), store.directory)


def test_finished_experts_are_not_rewritten(store):
    before = {p.name: p.stat() for p in store.directory.iterdir()}
    again = train_experts(
        tiny_config(num_experts=2, epochs=3), tiny_data(), store.directory, progress=False
    )
    for name in ("expert_0000.safetensors", "expert_0001.safetensors"):
        after = (store.directory / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before[name].st_ino, before[name].st_mtime_ns)
    assert again.manifest == store.manifest
