"""Decoded datasets cached as .npz (no pickle), keyed by source name and source-file fingerprint.

The cache lives under `$LTDD_CACHE/decoded/` (default `~/.cache/ltdd/decoded/`); it can be deleted
at any time. A file that cannot be read back is rebuilt silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ltdd.data.source import ImageSource
from ltdd.io import atomic_path

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def cache_root() -> Path:
    """`$LTDD_CACHE` if set, else `~/.cache/ltdd`."""
    env = os.environ.get("LTDD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ltdd"


def fingerprint(name: str, root: Path, files: list[Path]) -> str:
    """Hash of the source name and each file's path under `root`, size and mtime."""
    entries = []
    for path in files:
        stat = path.stat()
        entries.append([str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns])
    blob = json.dumps([CACHE_VERSION, name, entries]).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def cache_path(name: str, root: Path, files: list[Path]) -> Path:
    return cache_root() / "decoded" / f"{name}-{fingerprint(name, root, files)}.npz"


def cached_decode(
    name: str, root: Path, files: list[Path], decode: Callable[[], ImageSource]
) -> ImageSource:
    """Return the cached decode of `files` if readable, else run `decode` and cache its result."""
    path = cache_path(name, root, files)
    if path.is_file():
        source = _read(path)
        if source is not None:
            return source
        log.info("rebuilding unreadable cache file %s", path)
    source = decode()
    _write(path, source)
    return source


def _read(path: Path) -> ImageSource | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in _ARRAYS}
            return ImageSource(
                name=str(npz["name"]),
                class_names=[str(c) for c in npz["class_names"]],
                **arrays,
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _write(path: Path, source: ImageSource) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                name=np.array(source.name),
                class_names=np.array(source.class_names, dtype=str),
                **{key: getattr(source, key) for key in _ARRAYS},
            )
    except OSError as exc:
        log.warning("could not write the dataset cache %s (%s); continuing without it", path, exc)
