"""`estimate`: disk, memory and time a run of `train_experts` needs (for `--dry-run`).

Disk and memory are computed from the parameter count, the kept epochs and the activation sizes
of one forward pass. Time comes from a short measurement: two epochs of a few real steps
(random images, the configured batch size, K experts, GSAM and DSA as configured) on the
configured device, the second one timed, extrapolated to the whole run.
"""

from __future__ import annotations

import math
import time

import torch

from ltdd.device import resolve_device
from ltdd.experts.config import ExpertsConfig
from ltdd.experts.distributed import detect_ranks, rank_device
from ltdd.experts.sampler import SAMPLERS
from ltdd.experts.store import DTYPES
from ltdd.experts.trainer import Engine, expert_seed

_BYTES_PER_ENTRY = 64  # safetensors header per tensor
_META_BYTES = 1024  # the JSON metadata of an expert file (test metrics, epochs)


def _activation_bytes(engine: Engine) -> int:
    """Bytes of every module output for one sample (float32)."""
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
        for m in engine.model.modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        engine.model(torch.zeros(1, *engine.image_shape, device=engine.device))
    for hook in hooks:
        hook.remove()
    return 4 * sum(sizes)


def seconds_per_step(engine: Engine, k: int, timed_steps: int) -> float:
    """Wall seconds of one training step of K experts (DSA, batching, GSAM and SGD included),
    timed over an epoch of `timed_steps` steps of random images after a one-step warm-up."""
    cfg = engine.cfg
    device = engine.device
    seeds = [expert_seed(cfg.seed, i) for i in range(k)]
    init = torch.stack([engine.init_params(s) for s in seeds])
    gen = torch.Generator().manual_seed(0)

    def epoch_seconds(steps: int) -> float:
        n = cfg.batch_size * steps  # class-balanced labels: both samplers give `steps` batches
        images = torch.randn(n, *engine.image_shape, generator=gen).to(device)
        labels = (torch.arange(n) % engine.num_classes).to(device)
        state = engine.fresh_state(init, seeds, labels)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        begin = time.perf_counter()
        engine.train_epoch(state, images, labels)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - begin

    epoch_seconds(1)
    return epoch_seconds(timed_steps) / timed_steps


def estimate(cfg: ExpertsConfig, data_info: dict, timed_steps: int = 2) -> dict:
    """Expected disk bytes (store and scratch), peak memory bytes and seconds of a run.

    `data_info` is what `data.json` records (`num_classes`, `image_shape`, `train_counts`).
    """
    cfg = cfg.resolved()
    ranks = detect_ranks()
    device = rank_device(resolve_device(cfg.device), ranks)
    image_shape = tuple(int(s) for s in data_info["image_shape"])
    counts = list(data_info["train_counts"])
    engine = Engine(cfg, int(data_info["num_classes"]), image_shape, device)
    num_params = engine.layout.num_params
    trainable = num_params - engine.start
    k = min(cfg.vectorize, cfg.num_experts)
    groups = math.ceil(cfg.num_experts / cfg.vectorize)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    sampler = SAMPLERS.get(cfg.sampler)(labels, cfg.batch_size, cfg.num_samples_cls)
    steps_per_epoch = len(sampler.epoch(torch.Generator().manual_seed(0)))

    itemsize = DTYPES[cfg.dtype].itemsize
    kept = len(cfg.save_epochs)
    final = 0 if cfg.dtype == "float32" and cfg.epochs in cfg.save_epochs else 4 * num_params
    per_expert = kept * (num_params * itemsize + _BYTES_PER_ENTRY) + final + _META_BYTES
    state_bytes = 4 * k * (num_params + 2 * trainable)
    data_bytes = 4 * math.prod(image_shape) * len(labels)
    passes = 2 if cfg.gsam else 1
    # per expert: parameters, momentum, gradient(s), perturbation, updated copy
    param_memory = 4 * k * (2 * num_params + (2 + 2 * passes) * trainable)
    activations = 2 * _activation_bytes(engine) * cfg.batch_size * k

    per_step = seconds_per_step(engine, k, timed_steps)
    groups_per_rank = math.ceil(groups / ranks.world_size)
    return {
        "device": str(device),
        "world_size": ranks.world_size,
        "num_params": num_params,
        "trainable_params": trainable,
        "num_experts": cfg.num_experts,
        "vectorize": k,
        "steps_per_epoch": steps_per_epoch,
        "epochs": cfg.epochs,
        "kept_epochs": kept,
        "disk_bytes": cfg.num_experts * per_expert,
        "scratch_bytes": groups * (k * kept * num_params * itemsize + state_bytes),
        "official_layout_bytes": cfg.num_experts * (cfg.epochs + 1) * num_params * 4,
        "peak_memory_bytes": data_bytes + param_memory + activations,
        "seconds_per_step": per_step,
        "seconds": per_step * steps_per_epoch * cfg.epochs * groups_per_rank,
    }
