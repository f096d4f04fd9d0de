"""Splitting experts across torchrun ranks (gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# Ranks finish their experts at different times; the barrier before the manifest must wait.
_TIMEOUT = timedelta(hours=48)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: list) -> list:
        """The items this rank handles: every world_size-th one, starting at its rank."""
        return items[self.rank :: self.world_size]


def detect_ranks() -> Ranks:
    """Ranks from the environment variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK)."""
    return Ranks(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Under torchrun, an unindexed CUDA device becomes cuda:<local rank>."""
    if device.type == "cuda" and device.index is None and ranks.world_size > 1:
        return torch.device("cuda", ranks.local_rank)
    return device


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the torchrun process group for the block (nothing to do for a single process)."""
    created = ranks.world_size > 1 and not dist.is_initialized()
    if created:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=_TIMEOUT)
    try:
        yield
    finally:
        if created:
            dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (no-op for a single process)."""
    if ranks.world_size > 1:
        dist.barrier()
