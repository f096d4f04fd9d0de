"""Issue 12, serious cases: one writer per directory, expert stores checked before use (without
re-hashing them on every open), and a NaN checkpoint never resumed."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_support import assert_refused, snapshot
from distill_toy import MODEL, toy_data, toy_experts

from ltdd import hashcache
from ltdd.distill import DistillConfig, PhaseConfig, distill
from ltdd.distill.engine import CHECKPOINT, DISTILLED
from ltdd.errors import UserError
from ltdd.experts import train_experts
from ltdd.experts.verify import open_store
from ltdd.io import load_tensors, save_tensors
from ltdd.lock import LOCK_FILE, locked

from experts_support import (
    single_thread,  # noqa: F401 (autouse fixture)
    tiny_config,
    tiny_data,
)

HOLD = "import sys, time; from ltdd.lock import locked\nwith locked(sys.argv[1]):\n" + (
    "    print('held', flush=True); time.sleep(120)"
)


@pytest.fixture()
def holder(tmp_path):
    """A separate process holding the lock of tmp_path/held; SIGKILLed at the end."""
    folder = tmp_path / "held"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    "argv, what",
    [
        (["run", "runs_dir={parent}", "name=held", "data.dataset=procedural"], "run directory"),
        (["experts", "--out", "{folder}", "data.dataset=procedural"], "expert store"),
        (["distill", "--experts", "{parent}", "--out", "{folder}"], "distillation folder"),
    ],
)
def test_second_writer_is_refused_naming_the_folder_and_pid(capsys, holder, argv, what):
    folder, proc = holder
    argv = [a.format(folder=folder, parent=folder.parent) for a in argv]
    message = f"{folder}: {what} is in use by another ltdd process (PID {proc.pid})"
    assert_refused(capsys, argv, message, folder)


def test_a_killed_holder_leaves_no_stuck_lock(holder):
    folder, proc = holder
    with pytest.raises(UserError, match=f"PID {proc.pid}"), locked(folder):
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folder / LOCK_FILE).exists()  # the file stays, the kernel dropped the lock
    with locked(folder):
        assert (folder / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (folder / LOCK_FILE).exists()


def test_lock_on_a_fresh_folder_leaves_nothing_when_the_work_fails(tmp_path):
    with pytest.raises(RuntimeError), locked(tmp_path / "a" / "b"):
        raise RuntimeError("the work failed before writing anything")
    assert list(tmp_path.iterdir()) == []


def test_locks_serialise_racing_processes(tmp_path):
    """Four processes race for one folder many times; never two inside at once."""
    script = (
        "import sys, os, time; from ltdd.lock import locked; from ltdd.errors import UserError\n"
        "d = sys.argv[1]; inside = 0\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        with locked(d):\n"
        "            marker = os.path.join(d, 'inside')\n"
        "            fd = os.open(marker, os.O_CREAT | os.O_EXCL)\n"  # fails if another is in
        "            os.close(fd); time.sleep(0.0005); os.unlink(marker); inside += 1\n"
        "    except UserError:\n"
        "        pass\n"
        "print(inside)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "d")], stdout=subprocess.PIPE
        )
        for _ in range(4)
    ]
    counts = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs) and sum(counts) > 0


def test_lock_survives_a_holder_removing_the_folder_mid_mkdir(tmp_path, monkeypatch):
    """pathlib's mkdir(exist_ok=True) fails when the folder exists at its mkdir and is gone at
    its is_dir(): what a racing holder's release does. The lock must retry, not crash."""
    target = tmp_path / "d"
    real_mkdir = Path.mkdir
    raced = []

    def racing_mkdir(self, *args, **kwargs):
        if self == target and not raced:
            raced.append(True)
            raise FileExistsError(17, "File exists", str(self))  # exists, then removed
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    with locked(target) as held:
        assert (held / LOCK_FILE).exists()
    assert raced and not target.exists()


def test_lock_refuses_a_file_in_place_of_the_folder(tmp_path):
    (tmp_path / "f").write_text("not a folder")
    with pytest.raises(UserError, match="not a directory"), locked(tmp_path / "f"):
        pass


# ---- expert stores ------------------------------------------------------------
@pytest.fixture()
def store_dir(tmp_path) -> Path:
    out = tmp_path / "experts" / "representation"
    train_experts(tiny_config(num_experts=2, epochs=2), tiny_data(), out, progress=False)
    return out


def count_hashes(monkeypatch) -> list[Path]:
    hashed: list[Path] = []
    real = hashcache.sha256_file

    def counting(path, *args):
        hashed.append(Path(path))
        return real(path, *args)

    monkeypatch.setattr(hashcache, "sha256_file", counting)
    return hashed


def test_store_is_hashed_once_and_a_rewrite_is_caught(store_dir, monkeypatch):
    hashed = count_hashes(monkeypatch)
    for _ in range(3):
        open_store(store_dir, tiny_data().info)
    assert hashed == []  # write_manifest remembered the hashes it computed
    path = store_dir / "expert_0001.safetensors"
    data, stat = bytearray(path.read_bytes()), path.stat()
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    with pytest.raises(UserError, match="expert_0001.safetensors: sha256 differs"):
        open_store(store_dir)
    assert hashed == [path.resolve()]


def test_store_of_other_data_is_refused(store_dir):
    other = {**tiny_data().info, "seed": 7, "index_sha256": "tiny-7"}
    with pytest.raises(UserError, match="trained on other data \\(seed 0 there, 7 here"):
        open_store(store_dir, other)


@pytest.mark.parametrize("damage", ["flip", "missing", "other-data"])
def test_distill_and_experts_source_refuse_damaged_or_foreign_stores(capsys, store_dir, damage):
    path = store_dir / "expert_0000.safetensors"
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
        message = "expert_0000.safetensors: sha256 differs"
    elif damage == "missing":
        path.unlink()
        message = "expert_0000.safetensors: missing from the expert store"
    else:
        message = "its experts were trained on other data (dataset 'tiny' there, 'procedural'"
    out = store_dir.parent.parent / "out"
    data_args = ["data.dataset=procedural", "data.imbalance_factor=10"]
    distill_argv = ["distill", "--experts", store_dir.parent, "--out", out, *data_args]
    distill_argv += ["distill.method=mtt", "--share-experts", "representation"]
    assert_refused(capsys, distill_argv, message, store_dir.parent)
    assert not out.exists()  # no empty metrics.jsonl, no folder
    experts_argv = ["experts", "--source", store_dir, "--out", out, *data_args]
    assert_refused(capsys, [*experts_argv, "experts.kind=classifier"], message, store_dir.parent)
    assert not out.exists()


# ---- distillation checkpoints --------------------------------------------------
def test_nan_checkpoint_is_not_resumed(tmp_path):
    torch.set_num_threads(1)
    data = toy_data()
    experts = toy_experts(data)
    phase = PhaseConfig(
        syn_steps=2, min_start_epoch=0, current_max_start_epoch=1, max_start_epoch=3
    )
    cfg = DistillConfig(
        method="mtt", ipc=2, iterations=1, batch_syn=5, checkpoint_every=1, phase1=phase, **MODEL
    )
    distill(cfg, data, experts, tmp_path, progress=False)
    (tmp_path / DISTILLED).unlink()
    tensors, meta = load_tensors(tmp_path / CHECKPOINT)
    tensors["images"][0, 0, 0, 0] = float("nan")
    save_tensors(tmp_path / CHECKPOINT, tensors, meta)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="checkpoint.safetensors: holds NaN or inf"):
        distill(dataclasses.replace(cfg, iterations=2), data, experts, tmp_path, progress=False)
    assert snapshot(tmp_path) == before and not (tmp_path / DISTILLED).exists()


def test_lock_waits_for_nobody(tmp_path):
    """Refusal is immediate, not a wait (the brief: 'refuses at once')."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(UserError), locked(tmp_path):
            pass
        assert time.monotonic() - start < 1.0
    finally:
        proc.kill()
        proc.wait()


def test_metrics_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
    from ltdd.distill.engine import _metrics_lines

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 1}\n{"iteration": 2}\n{"iteration": 3, "lo')
    assert list(_metrics_lines(path, 2)) == ['{"iteration": 1}', '{"iteration": 2}']
    assert list(_metrics_lines(path, 5)) == ['{"iteration": 1}', '{"iteration": 2}']
