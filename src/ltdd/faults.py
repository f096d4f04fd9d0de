"""Fault injection for crash-safety tests: `LTDD_KILL_AT_WRITE=PATTERN[:N]`.

When the variable is set, the process kills itself with SIGKILL at the N-th (default first)
atomic write whose target path matches the glob PATTERN, after the temporary file is fully
written and before it is renamed into place: the worst moment for a writer. Unset, nothing
happens; the hook never changes what a run computes.
"""

from __future__ import annotations

import fnmatch
import os
import signal
from pathlib import Path

ENV = "LTDD_KILL_AT_WRITE"
_seen = {"count": 0}


def before_rename(path: Path) -> None:
    """Called by every atomic write between writing the temporary file and renaming it."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    pattern, _, nth = spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "")
    if not fnmatch.fnmatch(str(path), pattern):
        return
    _seen["count"] += 1
    if _seen["count"] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
