"""A run killed with SIGKILL and restarted writes the same bytes as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ltdd.io import sha256_file

SCRIPT = Path(__file__).with_name("experts_support.py")
ARGS = ["num_experts=3", "vectorize=2", "epochs=10", "momentum=0.9", "sampler=class_aware"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(out: Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), str(out), *ARGS], check=True, env=ENV)


def run_and_kill(out: Path, ready) -> None:
    """Start a run, SIGKILL it as soon as `ready(out)` holds, and check it died mid-run."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out), *ARGS], env=ENV)
    deadline = time.monotonic() + 60
    while not ready(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "manifest.json").exists()


def digests(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.glob("*")) if p.is_file()}


def reached(group: str, epoch: int):
    """Condition: the group's snapshot of `epoch` is on disk (so the group is mid-run)."""
    return lambda out: (out / ".partial" / group / f"epoch_{epoch:04d}.safetensors").exists()


def test_killed_and_resumed_equals_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    run(reference)
    resumed = tmp_path / "resumed"
    run_and_kill(resumed, reached("experts_0000-0001", 3))
    run_and_kill(resumed, reached("experts_0002-0002", 2))
    finished = {p.name: p.stat().st_mtime_ns for p in resumed.glob("expert_*")}
    assert finished and (resumed / ".partial").exists()
    run(resumed)
    assert digests(resumed) == digests(reference)
    assert len(digests(reference)) == 4  # three experts and the manifest
    for name, mtime in finished.items():  # finished experts were never rewritten
        assert (resumed / name).stat().st_mtime_ns == mtime
    assert not (resumed / ".partial").exists()
