"""Evaluation networks trained once: per-seed results keyed by everything that determines them.

Within a run the same network is often asked for twice: DD-Ranking's hard-label evaluation of a
real-image baseline is its own evaluation (same images, class labels and learning rate), and
the random subsets of its IOR term are the same for every hard-label set at the same learning
rate. A `SeedCache` keeps each trained network's test reports under a sha256 of the training
inputs (images, labels, learning rate, the training recipe, the seed, the device type), so a
repeated request returns the reports of the network already trained: the same numbers, since
training is deterministic for the same inputs on a CPU (tests/test_allocator.py compares
weights by sha256), without training it again. One cache belongs to one data set (its test
sets); it lives in memory for the life of the object.
"""

from __future__ import annotations

import copy
import hashlib
import json

import torch

from ltdd.config import to_dict
from ltdd.data.dataset import LongTailedData
from ltdd.evaluate.trainer import TrainConfig


def _tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    t = t.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class SeedCache:
    """Test reports of trained evaluation networks of one data set, by training-input digest."""

    def __init__(self, data: LongTailedData) -> None:
        self.data = data
        self._entries: dict[str, dict] = {}
        self.hits = 0
        self.misses = 0

    def key(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        lr: float,
        train: TrainConfig,
        seed: int,
        device: torch.device,
    ) -> str:
        """Digest of everything that determines the network trained from these inputs."""
        parts = {
            "images": _tensor_digest(images),
            "labels": _tensor_digest(labels),
            "lr": float(lr),
            "train": to_dict(train),
            "seed": int(seed),
            "device": torch.device(device).type,
            "num_classes": self.data.num_classes,
        }
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str, profiles: tuple[str, ...]) -> tuple[bool, dict[str, dict]] | None:
        """(weights finite, {profile: report}) when every profile in `profiles` is stored."""
        entry = self._entries.get(key)
        if entry is None or any(p not in entry["reports"] for p in profiles):
            self.misses += 1
            return None
        self.hits += 1
        return entry["finite"], {p: copy.deepcopy(entry["reports"][p]) for p in profiles}

    def put(self, key: str, finite: bool, reports: dict[str, dict]) -> None:
        """Store a trained network's reports (added to the profiles stored under `key`)."""
        entry = self._entries.setdefault(key, {"finite": finite, "reports": {}})
        entry["finite"] = finite
        entry["reports"].update(copy.deepcopy(reports))
