"""Dataset sources: one module per on-disk format, all registered in `DATASETS`."""

from __future__ import annotations

from pathlib import Path

from ltdd.data.source import ImageSource
from ltdd.data.sources import cifar, folder, idx, procedural, tiny_imagenet  # noqa: F401
from ltdd.data.sources.cache import cached_decode
from ltdd.data.sources.registry import DATASETS, DatasetFormat

__all__ = ["DATASETS", "DatasetFormat", "ImageSource", "load_source"]


def load_source(name: str, root: str | Path | None = None, *, cache: bool = True) -> ImageSource:
    """Read dataset `name` from `root` (the folder holding its official files or archive folder).

    Decoded arrays are cached (see `ltdd.data.sources.cache`) unless `cache` is False.
    """
    fmt = DATASETS.get(name)
    located = fmt.locate(None if root is None else Path(root).expanduser())
    files = fmt.files(located)
    if not (cache and fmt.cacheable):
        return fmt.decode(located, files)
    return cached_decode(name, located, files, lambda: fmt.decode(located, files))
