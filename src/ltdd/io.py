"""Atomic file writes, JSON and safetensors helpers shared by every stage."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ltdd import faults
from ltdd.errors import UserError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    The file gets the mode an ordinary `open` would give it (0666 minus the umask), not the
    0600 of `mkstemp`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        os.close(fd)
        try:
            yield tmp_path
        except OSError as exc:  # full disk, quota, file-size limit: name the target, not the tmp
            raise UserError(f"{path}: not written ({exc.strerror}); nothing was replaced") from None
        os.chmod(tmp_path, 0o666 & ~_umask())  # after writing: some writers recreate the file
        faults.before_rename(path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def check_writable(path: str | Path, folder: bool = False) -> Path:
    """Refuse, before any work, an output path that cannot be written (UserError naming it).

    `path` (a file, or with `folder` a directory) may not exist yet; then its nearest existing
    ancestor must be a writable directory. Full disks are found only when writing: every write
    is atomic, so the previous file survives and the error is one line.
    """
    path = Path(path)
    kind = "folder" if folder else "file"
    if path.exists():
        if folder and not path.is_dir():
            raise UserError(f"{path}: exists and is not a folder; choose an output folder")
        if not folder and path.is_dir():
            raise UserError(f"{path}: is a folder; give the path of the {kind} to write")
    ancestor = path if folder and path.is_dir() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{ancestor}: is not a folder, so it cannot hold the output {path}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{ancestor}: not writable (permission denied), cannot write {path}")
    return path


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], meta: dict | None = None
) -> None:
    """Save named tensors atomically; `meta` is stored as JSON under the metadata key `ltdd`."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {"ltdd": json.dumps(meta)} if meta is not None else None
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # safetensors reports OS errors (full disk) this way
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(
                f"{path}: could not be written ({reason}); nothing was replaced"
            ) from None


_UNREADABLE = (SafetensorError, OSError, ValueError, AttributeError, TypeError)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors file and its `ltdd` metadata; a missing or corrupt file is a UserError."""
    meta = load_meta(path)
    try:
        return load_file(str(path)), meta
    except _UNREADABLE as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None


def load_meta(path: str | Path) -> dict:
    """The `ltdd` metadata of a safetensors file, read from its header alone (no tensors)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            if header_len > path.stat().st_size - 8:
                raise ValueError(f"header length {header_len} exceeds the file")
            header = json.loads(fh.read(header_len))
        return json.loads(header.get("__metadata__", {}).get("ltdd", "{}"))
    except _UNREADABLE as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
