"""Batch orders for one expert: uniform shuffling and the class-aware sampler (§4.4).

A sampler turns a generator into the list of index batches of one epoch. Its state (the
class-aware sampler's cyclic iterators carry over between epochs) is a dict of tensors, so a
resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ltdd.registry import Registry

SAMPLERS: Registry[Callable[..., object]] = Registry("sampler")


@SAMPLERS.register("uniform")
class UniformSampler:
    """Each epoch a fresh permutation of all samples, cut into batches (the last may be short)."""

    def __init__(self, labels: Tensor, batch_size: int, num_samples_cls: int) -> None:
        self.num_samples = len(labels)
        self.batch_size = batch_size

    def epoch(self, generator: torch.Generator) -> list[Tensor]:
        order = torch.randperm(self.num_samples, generator=generator)
        return list(order.split(self.batch_size))

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        return None


class _Cycle:
    """An endless iterator over `items`, reshuffled (with `generator`) at every wrap."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.pos = len(items) - 1  # the first draw wraps, so the first pass is shuffled too

    def next(self, generator: torch.Generator) -> int:
        self.pos += 1
        if self.pos == len(self.items):
            self.pos = 0
            perm = torch.randperm(len(self.items), generator=generator).tolist()
            self.items = [self.items[j] for j in perm]
        return self.items[self.pos]


@SAMPLERS.register("class_aware")
class ClassAwareSampler:
    """Class-balanced sampling with replacement across epochs (decoupling's ClassAwareSampler).

    An epoch is max_c n_c × C draws. A cyclic iterator over the classes picks a class, then
    `num_samples_cls` consecutive samples come from that class's own cyclic iterator; both
    iterators are reshuffled at every wrap and keep their position from one epoch to the next.
    """

    def __init__(self, labels: Tensor, batch_size: int, num_samples_cls: int) -> None:
        num_classes = int(labels.max()) + 1
        members = [torch.nonzero(labels == c).flatten().tolist() for c in range(num_classes)]
        self.members = [_Cycle(m) for m in members if m]
        self.classes = _Cycle(list(range(len(self.members))))
        self.num_samples = max(len(m) for m in members) * len(self.members)
        self.batch_size = batch_size
        self.num_samples_cls = num_samples_cls

    def epoch(self, generator: torch.Generator) -> list[Tensor]:
        draws: list[int] = []
        while len(draws) < self.num_samples:
            cycle = self.members[self.classes.next(generator)]
            picks = [cycle.next(generator) for _ in range(self.num_samples_cls)]
            draws += picks[: self.num_samples - len(draws)]
        return list(torch.tensor(draws, dtype=torch.int64).split(self.batch_size))

    def state_dict(self) -> dict[str, Tensor]:
        cycles = [self.classes, *self.members]
        return {
            "items": torch.tensor([i for c in cycles for i in c.items], dtype=torch.int64),
            "pos": torch.tensor([c.pos for c in cycles], dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        items = state["items"].tolist()
        start = 0
        for cycle, pos in zip([self.classes, *self.members], state["pos"].tolist(), strict=True):
            cycle.items = items[start : start + len(cycle.items)]
            cycle.pos = pos
            start += len(cycle.items)
