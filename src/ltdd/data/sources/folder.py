"""A generic class-per-folder image tree: `<root>/{train,test}/<class>/*.{png,jpg,jpeg,bmp}`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ltdd.data.source import ImageSource
from ltdd.data.sources.images import decode_images, list_images
from ltdd.data.sources.registry import DatasetFormat, register
from ltdd.errors import UserError


class FolderFormat(DatasetFormat):
    """Classes are the sub-folders of `train/`, sorted by name; `test/` uses the same names."""

    name = "folder"
    layout = "train/<class>/*.png|jpg|jpeg|bmp and test/<class>/..."

    def files(self, root: Path) -> list[Path]:
        classes = self._classes(root)
        return self._split(root, "train", classes) + self._split(root, "test", classes)

    def decode(self, root: Path, files: list[Path]) -> ImageSource:
        classes = self._classes(root)
        index = {name: i for i, name in enumerate(classes)}
        images = decode_images(files, desc="decoding folder images")
        labels = np.array([index[path.parent.name] for path in files], dtype=np.int64)
        n = sum(path.parent.parent.name == "train" for path in files)
        return ImageSource(
            name=self.name,
            class_names=classes,
            train_images=images[:n],
            train_labels=labels[:n],
            test_images=images[n:],
            test_labels=labels[n:],
        )

    def _classes(self, root: Path) -> list[str]:
        for split in ("train", "test"):
            if not (root / split).is_dir():
                raise UserError(f"{root / split}: missing folder (the layout is {self.layout})")
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        if not classes:
            raise UserError(f"{root / 'train'}: no class folders (the layout is {self.layout})")
        unknown = sorted(
            p.name for p in (root / "test").iterdir() if p.is_dir() and p.name not in classes
        )
        if unknown:
            raise UserError(f"{root / 'test' / unknown[0]}: class folder not present in train/")
        return classes

    def _split(self, root: Path, split: str, classes: list[str]) -> list[Path]:
        """Every image of the split, class by class, files sorted by name."""
        paths = []
        for name in classes:
            folder = root / split / name
            found = list_images(folder) if folder.is_dir() else []
            if split == "train" and not found:
                raise UserError(f"{folder}: no images (expected *.png, *.jpg, *.jpeg or *.bmp)")
            paths.extend(found)
        return paths


register(FolderFormat())
