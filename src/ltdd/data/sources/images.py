"""Decode image files (PNG, JPEG, BMP) into one uint8 (N, C, H, W) array with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ltdd.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder` (by suffix, case-insensitive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def decode_one(path: Path, rgb: bool) -> np.ndarray:
    """One image as uint8 (C, H, W): RGB when `rgb` or the file is colour, else grayscale."""
    try:
        with Image.open(path) as im:
            mode = "RGB" if rgb or im.mode not in _GRAY_MODES else "L"
            array = np.asarray(im.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: not a readable image ({exc})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_images(paths: list[Path], rgb: bool = False, desc: str = "decoding") -> np.ndarray:
    """Decode `paths` into one (N, C, H, W) array; all must share one size (UserError naming the
    first that differs). Grayscale images are repeated to 3 channels if any image is colour."""
    arrays: list[np.ndarray] = []
    for path in tqdm(paths, desc=desc, unit="img", leave=False, disable=len(paths) < 5000):
        array = decode_one(path, rgb)
        if arrays and array.shape[1:] != arrays[0].shape[1:]:
            h, w = array.shape[1:]
            h0, w0 = arrays[0].shape[1:]
            raise UserError(
                f"{path}: image is {w}x{h} but {paths[0].name} is {w0}x{h0}; all images of a "
                "dataset must share one size (resize them first)"
            )
        arrays.append(array)
    if not arrays:
        raise ValueError("decode_images needs at least one path")
    channels = max(a.shape[0] for a in arrays)
    return np.stack([np.broadcast_to(a, (channels, *a.shape[1:])) for a in arrays])
