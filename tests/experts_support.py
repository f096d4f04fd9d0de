"""Tiny long-tailed data and configs shared by the tests/test_experts_*.py files."""

from __future__ import annotations

import pytest
import torch

from ltdd.data.dataset import LongTailedData
from ltdd.experts.config import ExpertsConfig

COUNTS = [24, 12, 6]
SHAPE = (1, 8, 8)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread while a test of this family runs: tiny ops on a shared 2-core CPU
    are many times slower with two contending threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_data(seed: int = 0) -> LongTailedData:
    """3 learnable classes of 1×8×8 images (class c brightens row band c), counts 24/12/6."""
    gen = torch.Generator().manual_seed(seed)

    def make(counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
        images = 0.5 * torch.randn(len(labels), *SHAPE, generator=gen)
        for c in range(len(counts)):
            images[labels == c, :, 2 * c : 2 * c + 3, :] += 1.0
        return images, labels

    train_x, train_y = make(COUNTS)
    test_x, test_y = make([8, 8, 8])
    empty_x, empty_y = torch.zeros(0, *SHAPE), torch.zeros(0, dtype=torch.int64)
    return LongTailedData(
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        test_lt_images=test_x,
        test_lt_labels=test_y,
        val_images=empty_x,
        val_labels=empty_y,
        train_counts=list(COUNTS),
        class_names=["a", "b", "c"],
        num_classes=3,
        image_shape=SHAPE,
        preprocessing=None,
        info={"dataset": "tiny", "seed": seed, "index_sha256": f"tiny-{seed}"},
    )


def tiny_config(**overrides) -> ExpertsConfig:
    """A few-second config: width 4, depth 2, batch 16, 2 epochs, 3 experts, CPU."""
    values = dict(
        kind="representation",
        num_experts=3,
        vectorize=2,
        width=4,
        depth=2,
        epochs=2,
        batch_size=16,
        device="cpu",
    )
    values.update(overrides)
    return ExpertsConfig(**values)


def main(argv: list[str]) -> None:
    """`python experts_support.py OUT [key=value ...]`: train tiny experts into OUT (for
    the subprocess tests: SIGKILL-and-resume and torchrun)."""
    from pathlib import Path

    from ltdd.config import from_dict, parse_overrides, to_dict
    from ltdd.experts import train_experts

    cfg = from_dict(ExpertsConfig, {**to_dict(tiny_config()), **parse_overrides(argv[1:])})
    train_experts(cfg, tiny_data(), Path(argv[0]), progress=False)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
