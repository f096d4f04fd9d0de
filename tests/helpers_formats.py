"""Writers of tiny datasets in the official on-disk formats (IDX, CIFAR python pickles,
Tiny-ImageNet, class-per-folder trees), for tests. Each returns what it wrote, as arrays."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}


@dataclass
class Written:
    """Arrays as the loader should return them (images uint8 N,C,H,W; labels int64)."""

    class_names: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000080<ndim>, big-endian int32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", IDX_MAGIC[array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` as IDX; gzipped when `path` ends in .gz."""
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def write_mnist_like(
    root: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, seed: int = 0
) -> Written:
    """The four official MNIST/Fashion-MNIST files with random 28x28 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    out = Written(
        [str(d) for d in range(10)],
        rng.integers(0, 256, (n_train, 1, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.int64),
        rng.integers(0, 256, (n_test, 1, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.int64),
    )
    suffix = ".gz" if gz else ""
    write_idx(root / f"train-images-idx3-ubyte{suffix}", out.train_images[:, 0])
    write_idx(root / f"train-labels-idx1-ubyte{suffix}", out.train_labels)
    write_idx(root / f"t10k-images-idx3-ubyte{suffix}", out.test_images[:, 0])
    write_idx(root / f"t10k-labels-idx1-ubyte{suffix}", out.test_labels)
    return out


class Py2Pickler(pickle._Pickler):  # type: ignore[misc,name-defined]
    """Protocol-2 pickles as python2 wrote them: every str and bytes is a python2 `str`
    (SHORT_BINSTRING / BINSTRING, loaded as bytes with encoding="bytes"), and numpy globals are
    named `numpy.core.multiarray` as numpy 1.x did."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]))
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)))
        self.write(data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "")
        if module == "numpy._core.multiarray":
            name = name or obj.__name__  # type: ignore[attr-defined]
            self.write(pickle.GLOBAL + f"numpy.core.multiarray\n{name}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _cifar_split(rng: np.random.Generator, n_classes: int, per_class: int):
    labels = rng.permutation(np.repeat(np.arange(n_classes, dtype=np.int64), per_class))
    images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    return images, labels


def write_cifar10(
    root: Path, n_per_class: int = 5, n_test_per_class: int = 2, seed: int = 0
) -> Written:
    """`<root>/cifar-10-batches-py/` with data_batch_1..5, test_batch and batches.meta."""
    rng = np.random.default_rng(seed)
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    train_images, train_labels = _cifar_split(rng, 10, n_per_class)
    test_images, test_labels = _cifar_split(rng, 10, n_test_per_class)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = np.array_split(np.arange(len(train_labels)), 5)
    for i, chunk in enumerate(chunks, start=1):
        batch = _cifar10_batch(
            f"training batch {i} of 5", train_images[chunk], train_labels[chunk], offset=chunk[0]
        )
        (folder / f"data_batch_{i}").write_bytes(py2_pickle(batch))
    test = _cifar10_batch("testing batch 1 of 1", test_images, test_labels, offset=0)
    (folder / "test_batch").write_bytes(py2_pickle(test))
    meta = {"num_cases_per_batch": len(chunks[0]), "label_names": names, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return Written(names, train_images, train_labels, test_images, test_labels)


def _cifar10_batch(label: str, images: np.ndarray, labels: np.ndarray, offset: int) -> dict:
    return {
        "batch_label": label,
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(images), 3072),
        "filenames": [f"image_{offset + i:05d}.png" for i in range(len(images))],
    }


def write_cifar100(
    root: Path, n_per_class: int = 2, n_test_per_class: int = 1, seed: int = 0
) -> Written:
    """`<root>/cifar-100-python/` with train, test and meta (fine and coarse labels)."""
    rng = np.random.default_rng(seed)
    fine_names = [f"fine_{i:02d}" for i in range(100)]
    coarse_names = [f"coarse_{i:02d}" for i in range(20)]
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    splits = []
    for split, per_class in (("train", n_per_class), ("test", n_test_per_class)):
        images, labels = _cifar_split(rng, 100, per_class)
        batch = {
            "filenames": [f"{split}_{i:05d}.png" for i in range(len(images))],
            "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": [int(v) for v in labels],
            "coarse_labels": [int(v) // 5 for v in labels],
            "data": images.reshape(len(images), 3072),
        }
        (folder / split).write_bytes(py2_pickle(batch))
        splits.append((images, labels))
    meta = {"fine_label_names": fine_names, "coarse_label_names": coarse_names}
    (folder / "meta").write_bytes(py2_pickle(meta))
    return Written(fine_names, *splits[0], *splits[1])


def flat_colour(value: tuple[int, int, int], size: int) -> np.ndarray:
    return np.broadcast_to(np.array(value, dtype=np.uint8), (size, size, 3)).copy()


def write_tiny_imagenet(
    root: Path, wnids: list[str], n_train: int = 3, n_val_per_class: int = 2, size: int = 16
) -> Written:
    """`<root>/tiny-imagenet-200/` in the official layout, flat-colour JPEGs (colour encodes class
    and index, so lossy JPEG still identifies each image). The first train image is grayscale.
    wnids.txt keeps the given order; the loader must sort it."""
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}, other name\n" for w in wnids))
    classes = sorted(wnids)
    train_images, train_labels = [], []
    for c, wnid in enumerate(classes):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        lines = []
        for i in range(n_train):
            colour = (40 + 60 * c, 30 + 50 * i, 200)
            pixels = flat_colour(colour, size)
            image = Image.fromarray(pixels)
            if c == 0 and i == 0:
                image = image.convert("L")
                pixels = np.repeat(np.asarray(image)[:, :, None], 3, axis=2)
            image.save(folder / f"{wnid}_{i}.JPEG", format="JPEG", quality=95)
            lines.append(f"{wnid}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}\n")
            train_images.append(pixels.transpose(2, 0, 1))
            train_labels.append(c)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(lines))
    # val images interleave the classes, as the official val_annotations.txt does
    order = [(c, j) for j in range(n_val_per_class) for c in range(len(classes))]
    test_images, test_labels, annotations = [], [], []
    for k, (c, j) in enumerate(order):
        pixels = flat_colour((220 - 60 * c, 40 + 70 * j, 90), size)
        Image.fromarray(pixels).save(base / "val" / "images" / f"val_{k}.JPEG", format="JPEG")
        annotations.append(f"val_{k}.JPEG\t{classes[c]}\t0\t0\t{size - 1}\t{size - 1}\n")
        test_images.append(pixels.transpose(2, 0, 1))
        test_labels.append(c)
    (base / "val" / "val_annotations.txt").write_text("".join(annotations))
    names = [f"thing {w}" for w in classes]
    sort = sorted(range(len(order)), key=lambda k: f"val_{k}.JPEG")
    return Written(
        names,
        np.stack(train_images),
        np.array(train_labels, dtype=np.int64),
        np.stack(test_images)[sort],
        np.array(test_labels, dtype=np.int64)[sort],
    )


def write_folder_tree(
    root: Path,
    classes: list[str],
    n_train: int = 3,
    n_test: int = 2,
    size: tuple[int, int] = (8, 6),
    gray: bool = False,
    seed: int = 0,
) -> Written:
    """`<root>/{train,test}/<class>/img_<i>.png`, random lossless PNGs of `size` (width, height)."""
    rng = np.random.default_rng(seed)
    w, h = size
    channels = 1 if gray else 3
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = [], []
        for c, name in enumerate(sorted(classes)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
                Image.fromarray(pixels[:, :, 0] if gray else pixels).save(folder / f"img_{i}.png")
                images.append(pixels.transpose(2, 0, 1))
                labels.append(c)
        out.append((np.stack(images), np.array(labels, dtype=np.int64)))
    return Written(sorted(classes), *out[0], *out[1])
