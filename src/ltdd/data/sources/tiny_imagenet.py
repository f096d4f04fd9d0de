"""Tiny-ImageNet-200 in the official layout; the test split is `val/`, labelled by annotations."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ltdd.data.source import ImageSource
from ltdd.data.sources.images import decode_images, list_images
from ltdd.data.sources.registry import DatasetFormat, read_text, register, require_file
from ltdd.errors import UserError

FOLDER = "tiny-imagenet-200"


class TinyImageNetFormat(DatasetFormat):
    """Classes are the sorted wnids; train images by class folder, val images by annotation."""

    name = "tiny-imagenet"
    layout = (
        f"{FOLDER}/{{wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
        "val/val_annotations.txt}"
    )

    def files(self, root: Path) -> list[Path]:
        base = self._base(root)
        wnids = self._wnids(base)
        train = []
        for wnid in wnids:
            folder = base / "train" / wnid / "images"
            found = list_images(folder) if folder.is_dir() else []
            if not found:
                raise UserError(f"{folder}: no images (the official layout is {self.layout})")
            train.extend(found)
        annotations = require_file(base / "val" / "val_annotations.txt", self.layout)
        val_folder = base / "val" / "images"
        val = list_images(val_folder) if val_folder.is_dir() else []
        if not val:
            raise UserError(f"{val_folder}: no images (the official layout is {self.layout})")
        meta = [p for p in (base / "wnids.txt", base / "words.txt", annotations) if p.is_file()]
        return meta + train + val

    def decode(self, root: Path, files: list[Path]) -> ImageSource:
        base = self._base(root)
        wnids = self._wnids(base)
        index = {wnid: i for i, wnid in enumerate(wnids)}
        val_labels = self._annotations(base / "val" / "val_annotations.txt", index)
        images = [p for p in files if p.parent.name == "images"]
        train = [p for p in images if p.parent.parent.parent.name == "train"]
        val = [p for p in images if p.parent.parent.name == "val"]
        for path in val:
            if path.name not in val_labels:
                raise UserError(f"{path}: not listed in val/val_annotations.txt")
        listed = {p.name for p in val}
        missing = sorted(set(val_labels) - listed)
        if missing:
            raise UserError(
                f"{base / 'val' / 'images' / missing[0]}: listed in val_annotations.txt but missing"
            )
        pixels = decode_images(train + val, rgb=True, desc="decoding tiny-imagenet")
        return ImageSource(
            name=self.name,
            class_names=self._class_names(base, wnids),
            train_images=pixels[: len(train)],
            train_labels=np.array([index[p.parent.parent.name] for p in train], dtype=np.int64),
            test_images=pixels[len(train) :],
            test_labels=np.array([val_labels[p.name] for p in val], dtype=np.int64),
        )

    def _base(self, root: Path) -> Path:
        return root if (root / "wnids.txt").is_file() else root / FOLDER

    def _wnids(self, base: Path) -> list[str]:
        path = require_file(base / "wnids.txt", self.layout)
        wnids = sorted({line.strip() for line in read_text(path).splitlines() if line.strip()})
        if not wnids:
            raise UserError(f"{path}: no wnids")
        return wnids

    def _annotations(self, path: Path, index: dict[str, int]) -> dict[str, int]:
        """File name -> class index, from lines `<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>`."""
        labels = {}
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise UserError(f"{path}:{number}: expected '<file>\\t<wnid>\\t...'")
            if fields[1] not in index:
                raise UserError(f"{path}:{number}: wnid {fields[1]!r} is not in wnids.txt")
            labels[fields[0]] = index[fields[1]]
        return labels

    def _class_names(self, base: Path, wnids: list[str]) -> list[str]:
        """First synonym from words.txt (the wnid when absent or ambiguous)."""
        words = {}
        path = base / "words.txt"
        if path.is_file():
            for line in read_text(path).splitlines():
                wnid, _, text = line.partition("\t")
                words[wnid] = text.split(",")[0].strip()
        names = [words.get(w) or w for w in wnids]
        counts = Counter(names)
        return [n if counts[n] == 1 else f"{n} ({w})" for n, w in zip(names, wnids, strict=True)]


register(TinyImageNetFormat())
