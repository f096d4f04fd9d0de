"""The distilled-set file: one safetensors file with `images`, `labels`, `lr` and JSON metadata.

Metadata (key `ltdd`) holds at least `dataset`, `imbalance_factor`, `ipc`, `method`, `label_kind`
(hard|soft), `data` (the DataConfig that rebuilds the preprocessing and the test sets),
`index_sha256` (the long-tailed selection it came from) and `model` (the network it was made for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ltdd.config import to_dict
from ltdd.errors import UserError
from ltdd.io import load_tensors, save_tensors

if TYPE_CHECKING:
    from ltdd.data.dataset import DataConfig, LongTailedData

REQUIRED_META = ("dataset", "imbalance_factor", "ipc", "method", "label_kind", "data")


@dataclass
class DistilledSet:
    """Images in model-input space, hard (N,) or soft (N, K) labels, and a learning rate.

    `classes` (optional tensor in the file) is the class each image stands for; soft-label sets
    store it so that hard-label evaluations (DD-Ranking's HLR) and pictures need no argmax.
    """

    images: torch.Tensor
    labels: torch.Tensor
    lr: float
    meta: dict = field(default_factory=dict)
    classes: torch.Tensor | None = None

    @property
    def class_ids(self) -> torch.Tensor:
        """The class of each image: `classes`, else the hard labels, else argmax of the logits."""
        if self.classes is not None:
            return self.classes
        return self.labels if self.labels.dtype == torch.int64 else self.labels.argmax(dim=1)

    @property
    def label_kind(self) -> str:
        return "hard" if self.labels.dtype == torch.int64 else "soft"

    def save(self, path: str | Path) -> Path:
        meta = {**self.meta, "label_kind": self.label_kind}
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise ValueError(f"distilled-set metadata lacks {missing}")
        tensors = {
            "images": self.images.float(),
            "labels": self.labels,
            "lr": torch.tensor(float(self.lr), dtype=torch.float32),
        }
        if self.classes is not None:
            tensors["classes"] = self.classes.long()
        save_tensors(path, tensors, meta)
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        num_classes: int | None = None,
        image_shape: tuple[int, ...] | None = None,
    ) -> DistilledSet:
        """Read and validate a distilled-set file; anything malformed is a one-line UserError.

        Given the dataset's `num_classes` and `image_shape`, the set must also fit them (class
        ids in range, K == C soft-label columns, C×H×W images): every reader that trains on or
        draws a set passes them, so a set that does not fit is refused before any work.
        """
        tensors, meta = load_tensors(path)
        problem = _validate(tensors, meta) or _fit_problem(
            tensors, meta.get("num_classes", num_classes), meta.get("image_shape", image_shape)
        )
        if problem is None and (num_classes is not None or image_shape is not None):
            problem = _fit_problem(tensors, num_classes, image_shape, "the dataset's")
        if problem:
            raise UserError(f"{path}: not a valid ltdd distilled set ({problem})")
        return cls(
            tensors["images"], tensors["labels"], float(tensors["lr"]), meta, tensors.get("classes")
        )

    def check_fits(self, num_classes: int, image_shape: tuple[int, ...], path: str | Path) -> None:
        """Refuse (UserError naming `path`) a set whose labels or images do not fit the data."""
        tensors = {"images": self.images, "labels": self.labels}
        if self.classes is not None:
            tensors["classes"] = self.classes
        problem = _fit_problem(tensors, num_classes, image_shape, "the dataset's")
        if problem:
            raise UserError(f"{path}: does not fit the dataset it names ({problem})")


def check_lr(value: float, name: str = "--lr") -> float:
    """A learning rate must be a finite number > 0 (UserError otherwise)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Metadata keys: what each must be when present (REQUIRED_META must be present).
_META_TYPES: dict[str, tuple[str, Any]] = {
    "dataset": ("a string", lambda v: isinstance(v, str) and v != ""),
    "imbalance_factor": ("a number >= 1", lambda v: _is_number(v) and v >= 1),
    "ipc": ("a positive integer", lambda v: _is_int(v) and v >= 1),
    "method": ("a string", lambda v: isinstance(v, str)),
    "label_kind": ("hard or soft", lambda v: v in ("hard", "soft")),
    "data": ("a mapping", lambda v: isinstance(v, dict)),
    "model": ("a mapping", lambda v: isinstance(v, dict)),
    "index_sha256": ("a string", lambda v: isinstance(v, str)),
    "num_classes": ("an integer >= 2", lambda v: _is_int(v) and v >= 2),
    "image_shape": (
        "three positive integers",
        lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(d) and d > 0 for d in v),
    ),
    "class_names": ("a list of strings", lambda v: isinstance(v, list)),
    "train_counts": ("a list of integers", lambda v: isinstance(v, list)),
}


def _meta_problem(meta: Any) -> str | None:
    if not isinstance(meta, dict):
        return f"metadata must be a JSON object, got {type(meta).__name__}"
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        return f"metadata lacks {', '.join(missing)}"
    for key, (want, ok) in _META_TYPES.items():
        if key in meta and not ok(meta[key]):
            return f"metadata {key} must be {want}, got {meta[key]!r:.60}"
    return None


def _fit_problem(
    tensors: dict[str, torch.Tensor],
    num_classes: int | None,
    image_shape: Any,
    whose: str = "its",
) -> str | None:
    """Why the set's labels or images do not fit `num_classes` classes of `image_shape` images."""
    images, labels = tensors["images"], tensors["labels"]
    if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
        return (
            f"images are {'×'.join(map(str, images.shape[1:]))}, "
            f"{whose} images are {'×'.join(map(str, image_shape))}"
        )
    if num_classes is None:
        return None
    ids = [("classes", tensors.get("classes"))]
    if labels.dtype == torch.int64:
        ids.append(("labels", labels))
    elif labels.shape[1] != num_classes:
        return f"soft labels have {labels.shape[1]} columns, {whose} classes are {num_classes}"
    for name, values in ids:
        if values is not None and len(values) and (values.min() < 0 or values.max() >= num_classes):
            return f"{name} outside 0..{num_classes - 1}: {int(values.min())}..{int(values.max())}"
    return None


def _validate(tensors: dict[str, torch.Tensor], meta: dict) -> str | None:
    for name in ("images", "labels", "lr"):
        if name not in tensors:
            return f"tensor {name!r} is missing"
    images, labels, lr = tensors["images"], tensors["labels"], tensors["lr"]
    if images.ndim != 4 or images.dtype != torch.float32:
        return f"images must be float32 N×C×H×W, got {images.dtype} {tuple(images.shape)}"
    if len(images) == 0 or images[0].numel() == 0:
        return f"it holds no images (shape {tuple(images.shape)})"
    if labels.dtype == torch.int64:
        if labels.shape != (len(images),):
            return f"hard labels must have shape ({len(images)},), got {tuple(labels.shape)}"
    elif labels.dtype != torch.float32 or labels.ndim != 2 or len(labels) != len(images):
        return f"labels must be N int64 or N×K float32, got {labels.dtype} {tuple(labels.shape)}"
    classes = tensors.get("classes")
    if classes is not None and (classes.dtype != torch.int64 or classes.shape != (len(images),)):
        return f"classes must be {len(images)} int64 class ids, got {tuple(classes.shape)}"
    if lr.numel() != 1 or not torch.isfinite(lr).all() or float(lr) <= 0:
        return f"lr must be one positive number, got {lr.flatten()[:3].tolist()}"
    if not torch.isfinite(images).all() or not torch.isfinite(labels.float()).all():
        return "images or labels contain NaN or inf"
    problem = _meta_problem(meta)
    if problem is None and meta["label_kind"] != (
        "hard" if labels.dtype == torch.int64 else "soft"
    ):
        problem = f"metadata label_kind is {meta['label_kind']} but the labels are not"
    return problem


def set_metadata(data: LongTailedData, cfg: DataConfig, method: str, ipc: int, **extra) -> dict:
    """The metadata every distilled-set file carries (see the module docstring)."""
    return {
        "dataset": cfg.dataset,
        "imbalance_factor": cfg.imbalance_factor,
        "ipc": ipc,
        "method": method,
        "data": to_dict(cfg),
        "index_sha256": data.info["index_sha256"],
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "train_counts": data.train_counts,
        **extra,
    }
