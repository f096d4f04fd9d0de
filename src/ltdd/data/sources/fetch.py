"""Default root of Fashion-MNIST and MNIST: --root, the Debian package, the cache, a download."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ltdd.data.sources.cache import cache_root
from ltdd.errors import UserError
from ltdd.io import atomic_path

log = logging.getLogger(__name__)

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
SYSTEM_DIRS = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": Path("/usr/share/datasets/mnist"),
}
URL_BASES = {
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
}
PACKAGES = {"fashion-mnist": "dataset-fashion-mnist", "mnist": "dataset-mnist"}


def has_idx_files(folder: Path) -> bool:
    """True when all four official IDX files are in `folder`, gzipped or not."""
    return all((folder / stem).is_file() or (folder / f"{stem}.gz").is_file() for stem in IDX_FILES)


def default_root(name: str) -> Path:
    """Where to read `name` from when no --root is given; downloads into the cache if needed."""
    system = SYSTEM_DIRS[name]
    if has_idx_files(system):
        return system
    cached = cache_root() / name
    if has_idx_files(cached):
        return cached
    try:
        for stem in IDX_FILES:
            target = cached / f"{stem}.gz"
            if not target.is_file():
                download(URL_BASES[name] + f"{stem}.gz", target)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise UserError(
            f"{name} not found and the download failed ({exc}); install the Debian package "
            f"{PACKAGES[name]} or pass --root DIR (the folder holding the official *-ubyte.gz)"
        ) from None
    return cached


def download(url: str, target: Path, chunk: int = 1 << 20) -> None:
    """Fetch `url` into `target` atomically, with a progress bar."""
    log.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=60) as response, atomic_path(target) as tmp:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            open(tmp, "wb") as fh,
            tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar,
        ):
            while block := response.read(chunk):
                fh.write(block)
                bar.update(len(block))
