"""Resumable state of one group of experts, kept under `<out>/.partial/experts_<a>-<b>/`.

At the end of every epoch the group writes the snapshot of that epoch (if kept) and then its
training state (stacked parameters, momentum buffers, MaxNorm thresholds, generator and sampler
states, epoch), each file atomically. A run killed at any moment restarts from the last state
written and recomputes the same epochs bit for bit.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from ltdd.errors import UserError
from ltdd.experts.store import DTYPES, epoch_key
from ltdd.io import load_tensors, save_tensors

PARTIAL = ".partial"


@dataclass
class GroupState:
    """Everything that changes while a group of K experts trains."""

    epoch: int
    params: Tensor  # (K, P) float32, full flat parameters
    momentum: Tensor  # (K, T) SGD momentum buffers of the trainable part
    tau: Tensor  # (K,) MaxNorm thresholds, NaN until the first projection
    batch_generators: list[torch.Generator]
    dsa_generators: list[torch.Generator]
    samplers: list  # one sampler per expert (see ltdd.experts.sampler)


class GroupCheckpoint:
    """Reads and writes one group's state and per-epoch snapshots."""

    def __init__(self, out_dir: Path, experts: list[int], config_hash: str) -> None:
        self.directory = out_dir / PARTIAL / f"experts_{experts[0]:04d}-{experts[-1]:04d}"
        self.experts = experts
        self.config_hash = config_hash

    @property
    def state_path(self) -> Path:
        return self.directory / "state.safetensors"

    def snapshot_path(self, epoch: int) -> Path:
        return self.directory / f"{epoch_key(epoch)}.safetensors"

    def save(self, state: GroupState) -> None:
        tensors = {"params": state.params, "momentum": state.momentum, "tau": state.tau}
        for k in range(len(self.experts)):
            tensors[f"batch_rng_{k}"] = state.batch_generators[k].get_state()
            tensors[f"dsa_rng_{k}"] = state.dsa_generators[k].get_state()
            for name, value in state.samplers[k].state_dict().items():
                tensors[f"sampler_{k}_{name}"] = value
        meta = {"epoch": state.epoch, "config_hash": self.config_hash, "experts": self.experts}
        save_tensors(self.state_path, tensors, meta)

    def load(self, fresh: GroupState) -> GroupState | None:
        """The saved state (restored into `fresh`'s generators and samplers), or None."""
        if not self.state_path.is_file():
            return None
        tensors, meta = load_tensors(self.state_path)
        if meta.get("config_hash") != self.config_hash or meta.get("experts") != self.experts:
            raise UserError(
                f"{self.directory}: holds an interrupted run of another configuration; "
                "delete it (or use another output directory) to start over"
            )
        for k in range(len(self.experts)):
            fresh.batch_generators[k].set_state(tensors[f"batch_rng_{k}"])
            fresh.dsa_generators[k].set_state(tensors[f"dsa_rng_{k}"])
            prefix = f"sampler_{k}_"
            fresh.samplers[k].load_state_dict(
                {n[len(prefix) :]: v for n, v in tensors.items() if n.startswith(prefix)}
            )
        return GroupState(
            epoch=meta["epoch"],
            params=tensors["params"].to(fresh.params.device),
            momentum=tensors["momentum"].to(fresh.momentum.device),
            tau=tensors["tau"].to(fresh.tau.device),
            batch_generators=fresh.batch_generators,
            dsa_generators=fresh.dsa_generators,
            samplers=fresh.samplers,
        )

    def save_snapshot(self, epoch: int, params: Tensor, dtype: str) -> None:
        """Write the (K, P) parameters after `epoch` epochs, converted to the storage dtype."""
        save_tensors(self.snapshot_path(epoch), {"snap": params.to(DTYPES[dtype]).clone()})

    def snapshots(self, k: int, epochs: list[int]) -> dict[int, Tensor]:
        """Expert k's kept snapshots, reading one row of each epoch file."""
        out = {}
        for epoch in epochs:
            with safe_open(str(self.snapshot_path(epoch)), framework="pt") as handle:
                out[epoch] = handle.get_slice("snap")[k]
        return out

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):  # other groups may still be in progress
            self.directory.parent.rmdir()
