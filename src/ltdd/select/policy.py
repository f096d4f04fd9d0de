"""What to do when a tail class has fewer real images than IPC (recorded with every result)."""

from __future__ import annotations

import numpy as np

from ltdd.errors import UserError

TAIL_POLICIES = ("duplicate", "all", "error")
"""duplicate: cycle the class's images until IPC (the reference's `duplicate: True`);
all: keep only the images there are (the class gets fewer than IPC);
error: refuse."""


def fill_class(chosen: np.ndarray, ipc: int, policy: str, class_id: int) -> np.ndarray:
    """Bring a class's chosen indices up to `ipc` entries according to `policy`."""
    if len(chosen) >= ipc or policy == "all":
        return chosen[:ipc]
    if policy == "error" or len(chosen) == 0:
        raise UserError(
            f"class {class_id} has {len(chosen)} real images, fewer than ipc={ipc}; "
            f"use --tail-policy duplicate or all, or a smaller ipc"
        )
    if policy != "duplicate":
        raise UserError(f"unknown tail policy {policy!r}; known: {', '.join(TAIL_POLICIES)}")
    return np.resize(chosen, ipc)
