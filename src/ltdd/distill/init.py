"""Initialisation of the synthetic set: real images per class and soft labels (reference §5.3-5.4).

Images are grouped in class-contiguous blocks of IPC. A class is filled with real images chosen
at random, or (with a `predict` function, e.g. a classifier expert) with real images that the
expert classifies correctly, walked in a random order. A class with fewer suitable images than IPC
is completed by an explicit fill policy (`FILL_POLICIES`), and what happened is recorded; a class
with none at all gets N(0, 1) noise in model-input space, as the reference does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from ltdd.registry import Registry

FillPolicy = Callable[[Tensor, int, float, torch.Generator], Tensor]
FILL_POLICIES: Registry[FillPolicy] = Registry("fill policy")

PREDICT_BATCH = 256


def _noise(n: int, like: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn((n, *like.shape[1:]), generator=generator, dtype=like.dtype)


def _cycle(found: Tensor, ipc: int) -> Tensor:
    return found[torch.arange(ipc) % len(found)]


@FILL_POLICIES.register("duplicate")
def fill_duplicate(found: Tensor, ipc: int, jitter: float, generator: torch.Generator) -> Tensor:
    """Repeat the found images cyclically (i1..ik, i1..ik, ...) up to IPC (the reference)."""
    return _cycle(found, ipc)


@FILL_POLICIES.register("duplicate_jitter")
def fill_duplicate_jitter(
    found: Tensor, ipc: int, jitter: float, generator: torch.Generator
) -> Tensor:
    """Repeat cyclically, adding N(0, jitter^2) noise to every copy (the originals stay exact)."""
    out = _cycle(found, ipc).clone()
    k = len(found)
    out[k:] += jitter * _noise(ipc - k, found, generator)
    return out


@FILL_POLICIES.register("noise")
def fill_noise(found: Tensor, ipc: int, jitter: float, generator: torch.Generator) -> Tensor:
    """Keep the found images once and complete the class with N(0, 1) noise images."""
    return torch.cat([found, _noise(ipc - len(found), found, generator)])


def _correct_indices(
    order: Tensor, images: Tensor, cls: int, ipc: int, predict: Callable[[Tensor], Tensor]
) -> Tensor:
    """The first `ipc` indices of `order` (in order) whose image `predict` labels `cls`."""
    kept: list[Tensor] = []
    count = 0
    for start in range(0, len(order), PREDICT_BATCH):
        batch = order[start : start + PREDICT_BATCH]
        hits = batch[predict(images[batch]).cpu() == cls]
        kept.append(hits)
        count += len(hits)
        if count >= ipc:
            break
    return torch.cat(kept)[:ipc] if kept else order[:0]


def init_images(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    ipc: int,
    fill: str,
    generator: torch.Generator,
    predict: Callable[[Tensor], Tensor] | None = None,
    jitter: float = 0.1,
) -> tuple[Tensor, Tensor, dict]:
    """IPC images per class from the real `images` (CPU), their class ids, and a record.

    Without `predict`, random real images; with it, real images it classifies correctly.
    The record lists, per class, how many distinct real images were used and how many slots the
    fill policy (or noise, for a class with none) completed.
    """
    fill_fn = FILL_POLICIES.get(fill)
    blocks, real, filled, noise_classes = [], [], [], []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        order = members[torch.randperm(len(members), generator=generator)]
        chosen = (
            order[:ipc] if predict is None else _correct_indices(order, images, c, ipc, predict)
        )
        found = images[chosen]
        if len(found) == 0:
            block = _noise(ipc, images, generator)
            noise_classes.append(c)
        elif len(found) < ipc:
            block = fill_fn(found, ipc, jitter, generator)
        else:
            block = found
        blocks.append(block)
        real.append(len(found))
        filled.append(ipc - len(found))
    record = {
        "selection": "random_real" if predict is None else "correct_real",
        "fill_policy": fill,
        "jitter": jitter if fill == "duplicate_jitter" else None,
        "real_per_class": real,
        "filled_per_class": filled,
        "noise_classes": noise_classes,
    }
    classes = torch.arange(num_classes).repeat_interleave(ipc)
    return torch.cat(blocks), classes, record


def average_correct_logits(expert_logits: Iterable[Tensor], classes: Tensor) -> Tensor:
    """Soft-label logits: per image, the mean logits of the experts whose argmax is its class.

    An image that no expert classifies correctly gets all-zero logits (a uniform soft label),
    as the reference's guarded division does (§5.4).
    """
    total: Tensor | None = None
    count = torch.zeros(len(classes))
    for logits in expert_logits:
        logits = logits.detach().cpu()
        correct = (logits.argmax(dim=1) == classes).to(logits.dtype)
        part = logits * correct[:, None]
        total = part if total is None else total + part
        count += correct
    if total is None:
        raise ValueError("average_correct_logits needs at least one expert")
    return total / count.clamp_min(1.0)[:, None]
