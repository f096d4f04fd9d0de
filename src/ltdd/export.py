"""`ltdd export`: a distilled set in forms any framework reads without ltdd installed.

- `folder`: `train/<NN>_<class>/<IIII>.png`, the images with the preprocessing (ZCA, normalisation)
  inverted and rounded to 8 bits, an empty `test/` (so ltdd's own `folder` source reads the tree),
  `labels.json` (lr, class names, label kind, per image its file, its index in the set, class and
  soft-label logits) and `labels.csv` (one row per image: file, index, class, lr, logits). Files
  are listed class by class, in the order the `folder` source reads them.
- `npz` (`distilled.npz`) and `pt` (`distilled.pt`, plain tensors, lists and dicts: loads with
  `torch.load(..., weights_only=True)`): `images` (model-input space, float32), `pictures` (the
  8-bit inverted images, uint8 N×C×H×W), `labels`, `classes`, `lr`, `class_names` and the metadata.

Soft labels are logits: the training target is softmax(logits). Pixel values outside [0, 1] after
inverting the preprocessing are clipped, as `ltdd show` does. The output folder is written under a
temporary name and renamed at the end, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ltdd.distilled import DistilledSet
from ltdd.errors import UserError
from ltdd.registry import Registry

SOFT_LABELS = "logits; the training target is softmax(logits)"


@dataclass(frozen=True)
class Exportable:
    """A distilled set with its pictures (preprocessing inverted, 8-bit) and class names."""

    distilled: DistilledSet
    pictures: np.ndarray  # uint8 (N, C, H, W)
    class_names: list[str]

    def summary(self) -> dict:
        """What every format records beside the arrays."""
        meta = self.distilled.meta
        return {
            "lr": self.distilled.lr,
            "label_kind": self.distilled.label_kind,
            "soft_labels": SOFT_LABELS if self.distilled.label_kind == "soft" else None,
            "class_names": self.class_names,
            "num_images": len(self.pictures),
            "image_shape": list(self.pictures.shape[1:]),
            "pictures": "preprocessing inverted, clipped to [0, 1], rounded to 8 bits",
            "source": {
                k: meta.get(k) for k in ("dataset", "imbalance_factor", "ipc", "method", "model")
            },
        }


EXPORTERS: Registry[Callable[[Exportable, Path], None]] = Registry("export format")


def class_folder(index: int, name: str, num_classes: int) -> str:
    """`<index>_<name>` with a zero-padded index, so folders sort in class order."""
    width = len(str(max(num_classes - 1, 0)))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "class"
    return f"{index:0{width}d}_{safe}"


def _soft(distilled: DistilledSet) -> np.ndarray | None:
    return distilled.labels.numpy() if distilled.label_kind == "soft" else None


@EXPORTERS.register("folder")
def write_folder(item: Exportable, out: Path) -> None:
    """The class-per-folder PNG tree, labels.json and labels.csv (see the module docstring)."""
    distilled = item.distilled
    classes = distilled.class_ids.tolist()
    soft = _soft(distilled)
    names = [class_folder(c, n, len(item.class_names)) for c, n in enumerate(item.class_names)]
    (out / "test").mkdir(parents=True)
    seen = [0] * len(names)
    rows = []
    digits = len(str(len(item.pictures)))
    for i in sorted(range(len(classes)), key=classes.__getitem__):  # the folder source's order
        picture, c = item.pictures[i], classes[i]
        folder = out / "train" / names[c]
        folder.mkdir(parents=True, exist_ok=True)
        rel = f"train/{names[c]}/{seen[c]:0{digits}d}.png"
        seen[c] += 1
        mode = "L" if picture.shape[0] == 1 else "RGB"
        Image.fromarray(picture[0] if mode == "L" else picture.transpose(1, 2, 0), mode).save(
            out / rel
        )
        row = {"file": rel, "index": i, "class": c, "class_name": item.class_names[c]}
        if soft is not None:
            row["soft_label"] = [float(v) for v in soft[i]]
        rows.append(row)
    summary = {**item.summary(), "class_folders": names, "images": rows}
    (out / "labels.json").write_text(json.dumps(summary, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    num_soft = 0 if soft is None else soft.shape[1]
    writer.writerow(["file", "index", "class", "lr", *(f"logit_{k}" for k in range(num_soft))])
    for row in rows:
        soft_label = map(repr, row.get("soft_label", []))
        writer.writerow([row["file"], row["index"], row["class"], repr(distilled.lr), *soft_label])
    (out / "labels.csv").write_text(buffer.getvalue())


def _arrays(item: Exportable) -> dict[str, np.ndarray]:
    d = item.distilled
    return {
        "images": d.images.numpy(),
        "pictures": item.pictures,
        "labels": d.labels.numpy(),
        "classes": d.class_ids.numpy(),
        "lr": np.float32(d.lr),
    }


@EXPORTERS.register("npz")
def write_npz(item: Exportable, out: Path) -> None:
    """`distilled.npz`: the arrays, `class_names` and `meta` (JSON text); no pickle needed."""
    out.mkdir(parents=True)
    np.savez(
        out / "distilled.npz",
        **_arrays(item),
        class_names=np.array(item.class_names, dtype=str),
        meta=np.array(json.dumps(item.summary())),
    )


@EXPORTERS.register("pt")
def write_pt(item: Exportable, out: Path) -> None:
    """`distilled.pt`: a dict of tensors, `class_names` and `meta` (weights_only-loadable)."""
    out.mkdir(parents=True)
    content = {k: torch.as_tensor(np.asarray(v)) for k, v in _arrays(item).items()}
    torch.save(
        {**content, "class_names": list(item.class_names), "meta": item.summary()},
        out / "distilled.pt",
    )


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not an empty folder; choose a new --out")


def export_set(
    path: str | Path, out: str | Path, fmt: str = "folder", root: str | Path | None = None
) -> Path:
    """Export the distilled set at `path` to the folder `out` in format `fmt`; returns `out`.

    `root` is the dataset root if it moved (the data is needed to invert the preprocessing).
    """
    from ltdd.commands import load_set_and_data

    writer = EXPORTERS.get(fmt)
    out = Path(out)
    _check_out(out)
    distilled, data = load_set_and_data(Path(path), None if root is None else Path(root))
    pictures = data.preprocessing.inverse_transform(distilled.images)
    item = Exportable(
        distilled=distilled,
        pictures=np.rint(pictures.numpy() * 255).astype(np.uint8),
        class_names=list(data.class_names),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        writer(item, tmp / "set")
        _check_out(out)  # still free: nothing appeared meanwhile
        if out.exists():
            out.rmdir()
        os.replace(tmp / "set", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
