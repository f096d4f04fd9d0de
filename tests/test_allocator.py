"""The allocator setting of `ltdd`: freed activations are reused (no page faults on the next
step), and it changes no number computed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parent.parent / "src")

FAULTS = """
import resource, torch
from ltdd.allocator import keep_freed_memory
applied = keep_freed_memory()
def step():
    x = torch.ones(64 << 18)  # 64 MiB, above glibc's mmap threshold
    return float(x.sum())
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

GRADIENTS = """
import sys, torch
from ltdd.allocator import keep_freed_memory
keep_freed_memory()
torch.manual_seed(0)
from ltdd.distill.losses import inner_loss
from ltdd.distill.matching import InnerStep, tesla_gradients
from ltdd.distill.student import Student
from ltdd.models import ParamLayout, create_model
model = create_model("convnet", 3, (1, 32, 32), seed=0, width=32)  # 2 MiB activations
layout = ParamLayout.from_module(model)
start = layout.flatten(model)
images, labels = torch.randn(16, 1, 32, 32), torch.randn(16, 3)
steps = [InnerStep(torch.randperm(16), lambda x: x.flip(3)) for _ in range(3)]
out = tesla_gradients(Student(model, layout).forward, inner_loss("soft_ce", [5, 3, 1]), images,
    labels, torch.tensor(0.05), start, start + 0.01 * torch.randn_like(start), steps,
    torch.ones_like(start, dtype=torch.bool))
tensors = (out.loss, out.images, out.labels, out.lr)
sys.stdout.buffer.write(b"".join(t.numpy().tobytes() for t in tensors))
"""


def _run(code: str, malloc: str) -> bytes:
    env = {**os.environ, "PYTHONPATH": SRC, "LTDD_MALLOC": malloc, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, check=True
    ).stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_memory_is_reused_without_page_faults():
    applied, faults = _run(FAULTS, "").split()
    default, faults_default = _run(FAULTS, "system").split()
    assert (applied, default) == (b"True", b"False")
    # 5 x 64 MiB = 81,920 pages: faulted in again each time by default, reused when tuned
    # (at most one step's worth of fresh pages while the heap settles)
    assert int(faults_default) > 65_000
    assert int(faults) < 20_000


def test_results_are_bit_identical_with_and_without_it():
    assert _run(GRADIENTS, "") == _run(GRADIENTS, "system")
