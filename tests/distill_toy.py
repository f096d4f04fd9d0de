"""Tiny problems for the distillation tests: a small long-tailed set, in-memory expert
trajectories made by a few SGD steps of a tiny ConvNet, and DSA-backed inner steps."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ltdd.data.augment import DSAConfig, apply_dsa, sample_dsa
from ltdd.data.dataset import LongTailedData
from ltdd.distill.matching import InnerStep
from ltdd.models import ParamLayout, create_model, functional_forward

SHAPE = (1, 8, 8)
COUNTS = (12, 6, 3, 1)
MODEL = {"width": 4, "depth": 1}


class MemorySource:
    """A `TrajectorySource` over a (E, T, P) tensor of snapshots at epochs 0..T-1."""

    def __init__(self, snapshots: Tensor) -> None:
        self.snapshots = snapshots
        self.num_experts = snapshots.shape[0]
        self.epochs = list(range(snapshots.shape[1]))

    def snapshot(self, expert: int, epoch: int) -> Tensor:
        return self.snapshots[expert, epoch].clone()


def toy_data(counts: tuple[int, ...] = COUNTS, seed: int = 0) -> LongTailedData:
    """Random images whose mean depends on the class (learnable), head class first."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    centres = torch.randn((len(counts), *SHAPE), generator=g)
    images = centres[labels] + 0.5 * torch.randn((len(labels), *SHAPE), generator=g)
    empty = torch.zeros((0, *SHAPE))
    return LongTailedData(
        train_images=images,
        train_labels=labels,
        test_images=images,
        test_labels=labels,
        test_lt_images=images,
        test_lt_labels=labels,
        val_images=empty,
        val_labels=torch.zeros(0, dtype=torch.int64),
        train_counts=list(counts),
        class_names=[f"c{i}" for i in range(len(counts))],
        num_classes=len(counts),
        image_shape=SHAPE,
        preprocessing=None,
        info={"dataset": "toy", "imbalance_factor": 12.0, "preprocessing": None},
    )


def toy_model(num_classes: int = len(COUNTS), dtype: torch.dtype = torch.float32, seed: int = 0):
    model = create_model("convnet", num_classes, SHAPE, seed=seed, **MODEL).to(dtype)
    return model, ParamLayout.from_module(model)


def sgd_trajectory(
    data: LongTailedData,
    start: Tensor,
    epochs: int,
    seed: int,
    classifier_only: bool = False,
    lr: float = 0.05,
) -> Tensor:
    """(epochs + 1, P) snapshots of two SGD steps per epoch from `start`."""
    model, layout = toy_model(data.num_classes)
    free = (
        layout.mask("classifier") if classifier_only else torch.ones(layout.num_params, dtype=bool)
    )
    g = torch.Generator().manual_seed(seed)
    w, out = start.clone(), [start.clone()]
    for _ in range(epochs):
        for _ in range(2):
            idx = torch.randint(0, len(data.train_labels), (8,), generator=g)
            wv = w.requires_grad_()
            logits = functional_forward(model, layout, wv, data.train_images[idx])
            loss = torch.nn.functional.cross_entropy(logits, data.train_labels[idx])
            (grad,) = torch.autograd.grad(loss, wv)
            w = (w - lr * grad * free).detach()
        out.append(w.clone())
    return torch.stack(out)


def toy_experts(data: LongTailedData, num_experts: int = 3, epochs: int = 5) -> dict:
    """Experts of every kind the methods read; classifier experts continue representation ones."""
    reps, clss = [], []
    for e in range(num_experts):
        _, layout = toy_model(data.num_classes)
        model, _ = toy_model(data.num_classes, seed=100 + e)
        rep = sgd_trajectory(data, layout.flatten(model), epochs, seed=e)
        reps.append(rep)
        clss.append(sgd_trajectory(data, rep[-1], 3, seed=50 + e, classifier_only=True))
    rep_source = MemorySource(torch.stack(reps))
    return {
        "representation": rep_source,
        "classifier": MemorySource(torch.stack(clss)),
        "mtt": rep_source,
        "datm": rep_source,
    }


def dsa_steps(
    num_images: int, batch: int, steps: int, seed: int, shape: tuple = SHAPE
) -> list[InnerStep]:
    """Inner steps with real DSA draws (fixed per step) over random batches."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        index = torch.randperm(num_images, generator=g)[:batch]
        draw = sample_dsa(batch, shape, g, DSAConfig())
        out.append(InnerStep(index=index, augment=lambda x, d=draw: apply_dsa(x, d)))
    return out


def one_thread() -> Iterator[None]:
    """Run a test module on one torch thread, then restore the count: these tiny problems are
    latency-bound, and two threads on a shared 2-core CPU made them about 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
