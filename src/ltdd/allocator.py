"""Keep freed tensor memory in the process instead of handing it back to the kernel.

PyTorch's CPU tensors come from the C library's `malloc`. With glibc's defaults every block of
128 KiB or more (every activation of a ConvNet batch) is an `mmap` of fresh pages that `free`
returns with `munmap`, so each training step faults all its activations in again: the kernel
zeroes every page, and 25-35 % of the CPU time of a distillation or an expert epoch went to
system time (issue 10's profile; the official code pays the same). `keep_freed_memory` sets
glibc's `M_MMAP_MAX` to 0 (large blocks come from the heap and are reused) and raises
`M_TRIM_THRESHOLD` (freed heap memory stays mapped), so later steps reuse warm pages.

It changes where memory comes from, never a number computed: results are bit-identical. The
price is a higher resident size, since the heap keeps what it once held; set `LTDD_MALLOC=system`
to keep glibc's defaults. Other C libraries (macOS, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30
"""Freed memory at the top of the heap that stays mapped (bytes)."""
ENV = "LTDD_MALLOC"


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above; True if it was applied (glibc, not opted out)."""
    if os.environ.get(ENV, "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
