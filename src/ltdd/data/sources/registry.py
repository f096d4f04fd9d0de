"""The dataset registry and the interface every on-disk format implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from ltdd.data.source import ImageSource
from ltdd.errors import UserError
from ltdd.registry import Registry


class DatasetFormat(ABC):
    """How one dataset lies on disk (`files`) and how it is decoded (`decode`)."""

    name: str
    layout: str  # the official layout under the root, quoted in error messages
    cacheable: bool = True

    def locate(self, root: Path | None) -> Path:
        """The folder to read from; by default the user must name it."""
        return require_root(self.name, root, self.layout)

    @abstractmethod
    def files(self, root: Path) -> list[Path]:
        """Every file the dataset is decoded from (UserError when one is missing)."""

    @abstractmethod
    def decode(self, root: Path, files: list[Path]) -> ImageSource:
        """Read `files` into an ImageSource (UserError when one is corrupt)."""


DATASETS: Registry[DatasetFormat] = Registry("dataset")


def register(fmt: DatasetFormat) -> DatasetFormat:
    """Add `fmt` to DATASETS under its own name."""
    return DATASETS.register(fmt.name)(fmt)


def require_root(name: str, root: Path | None, layout: str) -> Path:
    """Check that the user named an existing root folder for dataset `name`."""
    if root is None:
        raise UserError(f"dataset {name} needs --root DIR: the folder that holds {layout}")
    if not root.is_dir():
        raise UserError(f"{root}: dataset root does not exist (expected it to hold {layout})")
    return root


def require_file(path: Path, layout: str) -> Path:
    """Check that one official file exists; the error names it and the expected layout."""
    if not path.is_file():
        raise UserError(f"{path}: missing file (the official layout is {layout})")
    return path


def read_text(path: Path) -> str:
    """A small text file of a dataset's layout (UserError when it is not UTF-8 text)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected UTF-8 text)") from None
