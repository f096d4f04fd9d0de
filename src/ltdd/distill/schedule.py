"""What each phase draws per iteration: the expert, the start epoch and the inner-step batches.

All draws come from an explicit `torch.Generator`, so a run is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def start_epoch_bound(
    iteration: int,
    min_start: int,
    current_max: int,
    max_start: int,
    expansion_end: int,
    sequential: bool,
) -> int:
    """Exclusive upper bound of the start epoch at `iteration` (reference §5.7).

    With Sequential Generation the bound grows from `current_max` to `max_start` over
    `expansion_end` iterations: min(T + floor((T+ - T) * it / E), T+); otherwise it is `max_start`.
    It is never below `min_start + 1`, so the range is never empty (the reference crashes there).
    """
    bound = max_start
    if sequential:
        bound = min(current_max + (max_start - current_max) * iteration // expansion_end, max_start)
    return max(bound, min_start + 1)


def sample_start_epoch(low: int, high: int, generator: torch.Generator) -> int:
    """A start epoch uniform on {low, ..., high - 1}."""
    return int(torch.randint(low, high, (1,), generator=generator).item())


def inner_batches(
    num_images: int, batch: int, steps: int, generator: torch.Generator
) -> list[Tensor]:
    """Index batches of the `steps` inner steps (reference §5.8).

    A queue of chunks of a fresh permutation (size `batch`, the last may be smaller) is refilled
    when empty; each step pops the LAST chunk.
    """
    out: list[Tensor] = []
    queue: list[Tensor] = []
    for _ in range(steps):
        if not queue:
            queue = list(torch.split(torch.randperm(num_images, generator=generator), batch))
        out.append(queue.pop())
    return out


@dataclass
class ExpertCursor:
    """Experts drawn without replacement: a permutation consumed in order, redrawn when used up."""

    num_experts: int
    order: list[int]
    position: int = 0

    @classmethod
    def fresh(cls, num_experts: int) -> ExpertCursor:
        return cls(num_experts=num_experts, order=[], position=0)

    def next(self, generator: torch.Generator) -> int:
        """The next expert; a new random permutation starts after every full pass."""
        if self.position >= len(self.order):
            self.order = torch.randperm(self.num_experts, generator=generator).tolist()
            self.position = 0
        expert = self.order[self.position]
        self.position += 1
        return expert

    def state(self) -> dict:
        return {"order": list(self.order), "position": self.position}

    def load(self, state: dict) -> None:
        self.order = [int(e) for e in state["order"]]
        self.position = int(state["position"])
