"""The distilled-set file: one safetensors file with `images`, `labels`, `lr` and JSON metadata.

Metadata (key `ltdd`) holds at least `dataset`, `imbalance_factor`, `ipc`, `method`, `label_kind`
(hard|soft), `data` (the DataConfig that rebuilds the preprocessing and the test sets),
`index_sha256` (the long-tailed selection it came from) and `model` (the network it was made for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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
    def load(cls, path: str | Path) -> DistilledSet:
        """Read and validate a distilled-set file; anything malformed is a one-line UserError."""
        tensors, meta = load_tensors(path)
        problem = _validate(tensors, meta)
        if problem:
            raise UserError(f"{path}: not a valid ltdd distilled set ({problem})")
        return cls(
            tensors["images"], tensors["labels"], float(tensors["lr"]), meta, tensors.get("classes")
        )


def _validate(tensors: dict[str, torch.Tensor], meta: dict) -> str | None:
    for name in ("images", "labels", "lr"):
        if name not in tensors:
            return f"tensor {name!r} is missing"
    images, labels, lr = tensors["images"], tensors["labels"], tensors["lr"]
    if images.ndim != 4 or images.dtype != torch.float32:
        return f"images must be float32 N×C×H×W, got {images.dtype} {tuple(images.shape)}"
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
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        return f"metadata lacks {', '.join(missing)}"
    return None


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
