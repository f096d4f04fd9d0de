"""A small deterministic, learnable 10-class 1x28x28 dataset for fast tests (no files needed).

Class c shows a grating at orientation 18c degrees (jittered, random phase and frequency) plus a
soft blob at a class-specific position on a circle, under seeded Gaussian noise. A ConvNet learns
it within a few epochs; a linear model gets part of the way through the blobs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ltdd.data.source import ImageSource
from ltdd.data.sources.registry import DatasetFormat, register

NUM_CLASSES = 10
SIZE = 28


def procedural_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render one uint8 (1, 28, 28) image per label with the given numpy generator."""
    n = len(labels)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) - (SIZE - 1) / 2
    angle = (np.pi * labels / NUM_CLASSES + rng.uniform(-0.08, 0.08, n)).astype(np.float32)
    freq = rng.uniform(0.12, 0.2, n).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    proj = np.cos(angle)[:, None, None] * x + np.sin(angle)[:, None, None] * y
    grating = np.cos(2 * np.pi * freq[:, None, None] * proj + phase[:, None, None])
    spot = 2 * np.pi * labels / NUM_CLASSES
    cx = (7 * np.cos(spot) + rng.normal(0, 1.0, n)).astype(np.float32)
    cy = (7 * np.sin(spot) + rng.normal(0, 1.0, n)).astype(np.float32)
    dist2 = (x - cx[:, None, None]) ** 2 + (y - cy[:, None, None]) ** 2
    blob = np.exp(-dist2 / (2 * 3.0**2))
    contrast = rng.uniform(35, 60, n).astype(np.float32)[:, None, None]
    noise = rng.standard_normal((n, SIZE, SIZE), dtype=np.float32)
    image = 110 + contrast * grating + 90 * blob + 25 * noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)[:, None]


def make_procedural(
    train_per_class: int = 600, test_per_class: int = 100, seed: int = 0
) -> ImageSource:
    """The procedural dataset: classes in order, `*_per_class` images each, fully seeded."""
    rng = np.random.default_rng(seed)
    train_labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), train_per_class)
    test_labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), test_per_class)
    return ImageSource(
        name="procedural",
        class_names=[f"orientation {18 * c} deg" for c in range(NUM_CLASSES)],
        train_images=procedural_images(train_labels, rng),
        train_labels=train_labels,
        test_images=procedural_images(test_labels, rng),
        test_labels=test_labels,
    )


class ProceduralFormat(DatasetFormat):
    """Generated in memory (about 0.1 s); `root` is ignored and nothing is cached."""

    name = "procedural"
    layout = "nothing (generated)"
    cacheable = False

    def locate(self, root: Path | None) -> Path:
        return Path(".")

    def files(self, root: Path) -> list[Path]:
        return []

    def decode(self, root: Path, files: list[Path]) -> ImageSource:
        return make_procedural()


register(ProceduralFormat())
