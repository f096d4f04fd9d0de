"""CIFAR-10 and CIFAR-100 from the official python archives, read with a restricted unpickler."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ltdd.data.source import ImageSource
from ltdd.data.sources.registry import DatasetFormat, register, require_file
from ltdd.errors import UserError

_core = getattr(np, "_core", None) or np.core  # numpy >= 2 moved numpy.core to numpy._core
# Only what the official archives hold: uint8 pixel arrays (labels and names are plain lists).
_DTYPES = ("u1",)


class _Refused(Exception):
    """An archive asked for something no official CIFAR archive needs."""


def _reconstruct(cls: Any, shape: Any, code: Any) -> np.ndarray:
    """numpy's array constructor, admitting only the empty placeholder numpy pickles write.

    The real size arrives later with the pixel bytes (`__setstate__`, which checks that they
    match); a larger placeholder would make numpy allocate it before any byte is read.
    """
    if cls is not np.ndarray or shape != (0,):
        raise _Refused(f"array placeholder of shape {shape!r}")
    return _core.multiarray._reconstruct(np.ndarray, (0,), b"b")


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if isinstance(spec, bytes):  # python2 archives: every str reads back as bytes
        spec = spec.decode("latin1")
    if spec not in _DTYPES:
        raise _Refused(f"array dtype {spec!r}")
    return np.dtype(spec)


def _scalar(dtype: Any, data: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.str.lstrip("|<>=") not in _DTYPES:
        raise _Refused(f"scalar of dtype {dtype!r}")
    return _core.multiarray.scalar(dtype, data)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_module, "_reconstruct")] = _reconstruct
    _ALLOWED_GLOBALS[(_module, "scalar")] = _scalar


class RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers and numpy arrays only; any other global is refused, not imported."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UserError(
                f"{self.path}: refused to unpickle global '{module}.{name}' "
                "(not a plain CIFAR archive)"
            ) from None


def load_pickle(path: Path) -> dict:
    """Unpickle one CIFAR archive file (python2 pickles: keys may be bytes or str)."""
    try:
        # From memory: a length field in a damaged pickle then cannot make the reader allocate
        # gigabytes before it finds that the data is not there.
        obj = RestrictedUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except _Refused as exc:
        raise UserError(f"{path}: refused {exc} (not a plain CIFAR archive)") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        RecursionError,
        MemoryError,
        OverflowError,
        UnicodeDecodeError,
    ) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(
            f"{path}: not a readable CIFAR archive ({reason}); fetch it again"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: not a CIFAR archive (holds a {type(obj).__name__}, not a dict)")
    return obj


def entry(batch: dict, key: str, path: Path) -> Any:
    """`batch[key]`, accepting the bytes keys of python2 pickles as well as str keys."""
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise UserError(f"{path}: no {key!r} entry (not a CIFAR archive)")


def as_text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class CifarFormat(DatasetFormat):
    """An extracted `cifar-*-python.tar.gz`: pickled N x 3072 uint8 rows (R, G, B planes)."""

    def __init__(
        self,
        name: str,
        folder: str,
        train: list[str],
        test: str,
        meta: str,
        labels_key: str,
        names_key: str,
    ) -> None:
        self.name = name
        self.folder = folder
        self.batches = [*train, test]
        self.meta = meta
        self.labels_key = labels_key
        self.names_key = names_key
        self.layout = f"{folder}/{{{','.join([*self.batches, meta])}}}"

    def files(self, root: Path) -> list[Path]:
        base = root if (root / self.meta).is_file() else root / self.folder
        return [require_file(base / f, self.layout) for f in [*self.batches, self.meta]]

    def decode(self, root: Path, files: list[Path]) -> ImageSource:
        *batch_files, meta_file = files
        names = [as_text(n) for n in entry(load_pickle(meta_file), self.names_key, meta_file)]
        splits = [self._batch(path, len(names)) for path in batch_files]
        train = splits[:-1]
        return ImageSource(
            name=self.name,
            class_names=names,
            train_images=np.concatenate([images for images, _ in train]),
            train_labels=np.concatenate([labels for _, labels in train]),
            test_images=splits[-1][0],
            test_labels=splits[-1][1],
        )

    def _batch(self, path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        batch = load_pickle(path)
        data = entry(batch, "data", path)
        try:
            labels = np.asarray(entry(batch, self.labels_key, path), dtype=np.int64)
        except (TypeError, ValueError):
            raise UserError(f"{path}: {self.labels_key!r} is not a list of integers") from None
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
            raise UserError(f"{path}: 'data' is not an N x 3072 uint8 array")
        if data.shape[1] != 3 * 32 * 32:
            raise UserError(f"{path}: 'data' rows hold {data.shape[1]} bytes, expected 3072")
        if labels.shape != (len(data),):
            raise UserError(f"{path}: {labels.size} labels but {len(data)} images")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise UserError(f"{path}: labels outside 0..{num_classes - 1}")
        return data.reshape(-1, 3, 32, 32), labels


register(
    CifarFormat(
        "cifar10",
        "cifar-10-batches-py",
        train=[f"data_batch_{i}" for i in range(1, 6)],
        test="test_batch",
        meta="batches.meta",
        labels_key="labels",
        names_key="label_names",
    )
)
register(
    CifarFormat(
        "cifar100",
        "cifar-100-python",
        train=["train"],
        test="test",
        meta="meta",
        labels_key="fine_labels",
        names_key="fine_label_names",
    )
)
