"""From a dataset source to the long-tailed, preprocessed tensors every stage trains on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ltdd.data.longtail import index_sha256, longtail_counts, longtail_indices
from ltdd.data.preprocess import Preprocessing
from ltdd.data.source import ImageSource
from ltdd.data.sources import load_source
from ltdd.errors import UserError


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, how imbalanced, and how it is preprocessed (YAML section `data`)."""

    dataset: str = "fashion-mnist"
    root: Path | None = None
    imbalance_factor: float = field(default=100.0, metadata={"ge": 1})
    test_profile: str = field(default="balanced", metadata={"choices": ("balanced", "long-tailed")})
    seed: int = field(default=0, metadata={"ge": 0})
    normalize: bool = True
    zca: bool = True
    zca_eps: float = field(default=0.1, metadata={"gt": 0})
    val_per_class: int = field(default=0, metadata={"ge": 0})
    # where the validation images come from: "train" carves them from each class's long-tailed
    # training images; "held-out" takes them from the source's training images the long-tailed
    # selection left out (ImageNet-LT's convention: a balanced validation set no stage trains
    # on), carving from the class's selected images only where too few are left out (the head)
    val_from: str = field(default="train", metadata={"choices": ("train", "held-out")})


@dataclass(frozen=True)
class LongTailSplit:
    """Indices into a source's train/test arrays that make up the long-tailed splits."""

    train_indices: np.ndarray
    val_indices: np.ndarray
    test_lt_indices: np.ndarray
    train_counts: list[int]
    val_counts: list[int]
    test_counts: list[int]
    test_lt_counts: list[int]

    def info(self) -> dict:
        return {
            "train_counts": self.train_counts,
            "val_counts": self.val_counts,
            "test_counts": self.test_counts,
            "test_lt_counts": self.test_lt_counts,
            "index_sha256": index_sha256(self.train_indices),
            "val_index_sha256": index_sha256(self.val_indices),
            "test_lt_index_sha256": index_sha256(self.test_lt_indices),
        }


@dataclass(frozen=True)
class LongTailedData:
    """The tensors of one long-tailed benchmark, in model-input space (normalised, whitened)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    test_lt_images: torch.Tensor
    test_lt_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    train_counts: list[int]
    class_names: list[str]
    num_classes: int
    image_shape: tuple[int, int, int]
    preprocessing: Preprocessing
    info: dict

    def test_set(self, profile: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The balanced or the long-tailed test set."""
        if profile == "balanced":
            return self.test_images, self.test_labels
        return self.test_lt_images, self.test_lt_labels


def split_longtail(source: ImageSource, cfg: DataConfig) -> LongTailSplit:
    """Select the long-tailed train split (minus validation) and the long-tailed test profile."""
    num_classes = source.num_classes
    if num_classes < 2:
        raise UserError(
            f"{source.name}: has {num_classes} class ({', '.join(source.class_names)}); "
            "classification needs at least two classes"
        )
    n_max = len(source.train_labels) // num_classes
    counts = longtail_counts(n_max, num_classes, cfg.imbalance_factor)
    if min(counts) == 0:
        raise UserError(
            f"data.imbalance_factor={cfg.imbalance_factor:g} leaves class {counts.index(0)} with "
            f"no training image ({n_max} in the head class); the largest usable beta is {n_max}"
        )
    selected = longtail_indices(source.train_labels, counts, cfg.seed)
    val_rng = np.random.default_rng([cfg.seed, 1])
    train_parts, val_parts = [], []
    start = 0
    for c, n_c in enumerate(counts):
        block = selected[start : start + n_c]
        start += n_c
        left_out = (
            np.setdiff1d(np.flatnonzero(source.train_labels == c), block)
            if cfg.val_from == "held-out"
            else np.zeros(0, dtype=np.int64)
        )
        from_left_out = min(cfg.val_per_class, len(left_out))
        carved = cfg.val_per_class - from_left_out
        if carved and carved >= n_c:
            raise UserError(
                f"data.val_per_class={cfg.val_per_class} leaves no training image in class {c} "
                f"({n_c} images{', none left out' if cfg.val_from == 'held-out' else ''}); "
                "use a smaller value"
            )
        is_val = np.zeros(n_c, dtype=bool)
        is_val[val_rng.choice(n_c, size=carved, replace=False)] = True
        held_out = np.sort(val_rng.choice(left_out, size=from_left_out, replace=False))
        train_parts.append(block[~is_val])
        val_parts.append(np.concatenate([block[is_val], held_out]))
    test_per_class = np.bincount(source.test_labels, minlength=num_classes)
    if test_per_class.min() == 0:
        raise UserError(
            f"{source.name}: class {source.class_names[int(test_per_class.argmin())]!r} has no "
            "test image; every class needs test images to be evaluated"
        )
    test_lt_counts = longtail_counts(int(test_per_class.min()), num_classes, cfg.imbalance_factor)
    test_lt = longtail_indices(source.test_labels, test_lt_counts, cfg.seed)
    return LongTailSplit(
        train_indices=np.concatenate(train_parts),
        val_indices=np.concatenate(val_parts),
        test_lt_indices=test_lt,
        train_counts=[len(p) for p in train_parts],
        val_counts=[len(p) for p in val_parts],
        test_counts=[int(n) for n in test_per_class],
        test_lt_counts=test_lt_counts,
    )


def describe(cfg: DataConfig) -> dict:
    """What `ltdd data` prints: class counts and the selection fingerprint, no preprocessing."""
    source = load_source(cfg.dataset, cfg.root)
    split = split_longtail(source, cfg)
    test_counts = split.test_counts if cfg.test_profile == "balanced" else split.test_lt_counts
    return {
        "dataset": cfg.dataset,
        "imbalance_factor": cfg.imbalance_factor,
        "seed": cfg.seed,
        "test_profile": cfg.test_profile,
        "num_classes": source.num_classes,
        "image_shape": list(source.image_shape),
        "class_names": source.class_names,
        **split.info(),
        "test_counts": test_counts,
    }


def prepare_data(cfg: DataConfig, preprocessing: Preprocessing | None = None) -> LongTailedData:
    """Load, split and preprocess; `preprocessing` (already fitted) skips the fit when given."""
    source = load_source(cfg.dataset, cfg.root)
    split = split_longtail(source, cfg)
    train_uint8 = source.train_images[split.train_indices]
    if preprocessing is None:
        preprocessing = Preprocessing(
            normalize=cfg.normalize, zca=cfg.zca, zca_eps=cfg.zca_eps
        ).fit(train_uint8)

    def labels(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.int64))

    def images(array: np.ndarray) -> torch.Tensor:
        if len(array) == 0:
            return torch.zeros((0, *array.shape[1:]), dtype=torch.float32)
        return preprocessing.transform(array)

    info = {
        "dataset": cfg.dataset,
        "imbalance_factor": cfg.imbalance_factor,
        "seed": cfg.seed,
        "num_classes": source.num_classes,
        "image_shape": list(source.image_shape),
        "class_names": source.class_names,
        **split.info(),
        "preprocessing": preprocessing.meta(),
    }
    return LongTailedData(
        train_images=images(train_uint8),
        train_labels=labels(source.train_labels[split.train_indices]),
        test_images=images(source.test_images),
        test_labels=labels(source.test_labels),
        test_lt_images=images(source.test_images[split.test_lt_indices]),
        test_lt_labels=labels(source.test_labels[split.test_lt_indices]),
        val_images=images(source.train_images[split.val_indices]),
        val_labels=labels(source.train_labels[split.val_indices]),
        train_counts=split.train_counts,
        class_names=list(source.class_names),
        num_classes=source.num_classes,
        image_shape=tuple(source.image_shape),
        preprocessing=preprocessing,
        info=info,
    )
