"""Keep freed tensor memory in the process instead of handing it back to the OS (glibc only).

glibc serves every allocation above its mmap threshold (32 MiB at most, adapting from 128 KiB)
with a fresh `mmap` and unmaps it on `free`. A training step allocates and frees the same large
activation tensors every time, so each step page-faults all of them in again: measured on this
project's 2-core CPU, about 10,800 minor faults and 22 % of the CPU time of an evaluation step
(ConvNet width 32, batch 100), and half the CPU time of a width-128 backbone forward of 256
images. Raising the mmap and trim thresholds makes freed blocks reusable by the next step. Values
are unchanged (only where memory comes from changes); peak memory is the same high-water mark.

`keep_freed_memory()` is called by the entry points of the heavy stages (the `ltdd` command,
expert training, evaluation). It does nothing where glibc's `mallopt` is absent, when the user set
glibc's own `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_`, or with
`LTDD_KEEP_FREED_MEMORY=0`.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # 1 GiB: larger single allocations still get their own mapping
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to 1 GiB once per process; True when they are set."""
    if "done" in _state:
        return _state["done"]
    _state["done"] = False
    if os.environ.get("LTDD_KEEP_FREED_MEMORY", "1") == "0" or any(
        name in os.environ for name in _USER_SETTINGS
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _state["done"] = bool(
        mallopt(M_MMAP_THRESHOLD, THRESHOLD) and mallopt(M_TRIM_THRESHOLD, THRESHOLD)
    )
    return _state["done"]
