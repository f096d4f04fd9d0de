"""Wall-clock, CPU time and peak memory of a stage (the supplementary's Table 9)."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: write 5 to clear_refs); False if unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), else since the process started."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def measure(device: torch.device) -> Iterator[dict]:
    """Yield a dict that, after the block, holds wall_s, cpu_s, peak_rss_mb and peak_gpu_mb."""
    record: dict = {}
    per_stage = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield record
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall_s = time.perf_counter() - wall
        record.update(
            wall_s=wall_s,
            cpu_s=time.process_time() - cpu,
            peak_rss_mb=_peak_rss_mb(),
            peak_rss_scope="stage" if per_stage else "process",
            device=str(device),
            peak_gpu_mb=(
                torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            ),
            gpu_hours=wall_s / 3600 if device.type == "cuda" else 0.0,
        )
        record["cpu_hours"] = record["cpu_s"] / 3600
