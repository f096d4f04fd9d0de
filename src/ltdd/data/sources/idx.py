"""Fashion-MNIST and MNIST from the official IDX files (gzipped or not)."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ltdd.data.source import ImageSource
from ltdd.data.sources.fetch import IDX_FILES, default_root
from ltdd.data.sources.registry import DatasetFormat, register, require_root
from ltdd.errors import UserError

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGITS = [str(d) for d in range(10)]
IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in .gz."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise UserError(f"{path}: truncated or corrupt gzip file ({exc}); fetch it again") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes with the given magic number (big-endian header)."""
    data = read_bytes(path)
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        found = data[:4].hex() if len(data) >= 4 else "nothing"
        raise UserError(
            f"{path}: not an IDX file with magic 0x{magic:08x} (found {found}); "
            "the file is corrupt or not the official one"
        )
    dims = [int.from_bytes(data[4 * (1 + i) : 4 * (2 + i)], "big") for i in range(ndim)]
    expected = math.prod(dims)  # exact: np.prod would wrap around in int64
    if len(data) - header != expected:
        shape = "x".join(map(str, dims))
        raise UserError(
            f"{path}: header says {shape} bytes of data ({expected}) but the file holds "
            f"{len(data) - header}; the file is truncated or corrupt, fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


class IdxFormat(DatasetFormat):
    """The four official IDX files of an MNIST-like dataset, in one folder."""

    layout = ", ".join(f"{stem}[.gz]" for stem in IDX_FILES)

    def __init__(self, name: str, class_names: list[str]) -> None:
        self.name = name
        self.class_names = class_names

    def locate(self, root: Path | None) -> Path:
        if root is None:
            return default_root(self.name)
        return require_root(self.name, root, self.layout)

    def files(self, root: Path) -> list[Path]:
        found = []
        for stem in IDX_FILES:
            plain, gz = root / stem, root / f"{stem}.gz"
            if not (plain.is_file() or gz.is_file()):
                raise UserError(
                    f"{gz}: missing file (the official layout is {self.layout} in one folder)"
                )
            found.append(plain if plain.is_file() else gz)
        return found

    def decode(self, root: Path, files: list[Path]) -> ImageSource:
        train_x, train_y, test_x, test_y = files
        train_images, train_labels = self._split(train_x, train_y)
        test_images, test_labels = self._split(test_x, test_y)
        return ImageSource(
            name=self.name,
            class_names=list(self.class_names),
            train_images=train_images,
            train_labels=train_labels,
            test_images=test_images,
            test_labels=test_labels,
        )

    def _split(self, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx(images_path, IMAGES_MAGIC)
        labels = read_idx(labels_path, LABELS_MAGIC).astype(np.int64)
        if len(labels) != len(images):
            raise UserError(
                f"{labels_path}: {len(labels)} labels but {images_path.name} holds "
                f"{len(images)} images"
            )
        if len(labels) and labels.max() >= len(self.class_names):
            raise UserError(
                f"{labels_path}: label {labels.max()} outside 0..{len(self.class_names) - 1}"
            )
        return np.array(images[:, None, :, :]), labels


register(IdxFormat("fashion-mnist", FASHION_CLASSES))
register(IdxFormat("mnist", DIGITS))
