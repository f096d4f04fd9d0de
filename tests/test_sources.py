"""Dataset sources: official on-disk formats, restricted unpickling, cache, default roots."""

from __future__ import annotations

import gzip
import pickle
import pickletools
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ltdd.data.source import ImageSource
from ltdd.data.sources import DATASETS, fetch, load_source
from ltdd.data.sources import cache as cache_module
from ltdd.data.sources.procedural import make_procedural
from ltdd.errors import UserError

from helpers_formats import (
    idx_bytes,
    py2_pickle,
    write_cifar10,
    write_cifar100,
    write_folder_tree,
    write_idx,
    write_mnist_like,
    write_tiny_imagenet,
)

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ltdd-cache"
    monkeypatch.setenv("LTDD_CACHE", str(root))
    return root


def assert_matches(source: ImageSource, written) -> None:
    assert source.class_names == written.class_names
    np.testing.assert_array_equal(source.train_images, written.train_images)
    np.testing.assert_array_equal(source.train_labels, written.train_labels)
    np.testing.assert_array_equal(source.test_images, written.test_images)
    np.testing.assert_array_equal(source.test_labels, written.test_labels)
    assert source.train_images.dtype == np.uint8 and source.train_labels.dtype == np.int64


# ---------------------------------------------------------------- ImageSource and registry


def test_image_source_properties_and_validation() -> None:
    images = np.zeros((4, 3, 5, 6), np.uint8)
    labels = np.array([0, 1, 1, 0], np.int64)
    source = ImageSource("x", ["a", "b"], images, labels, images[:2], labels[:2])
    assert source.num_classes == 2 and source.image_shape == (3, 5, 6)
    with pytest.raises(ValueError, match="uint8"):
        ImageSource("x", ["a", "b"], images.astype(np.float32), labels, images, labels)
    with pytest.raises(ValueError, match="int64"):
        ImageSource("x", ["a", "b"], images, labels.astype(np.int32), images, labels)
    with pytest.raises(ValueError, match="4 train images but 3 labels"):
        ImageSource("x", ["a", "b"], images, labels[:3], images, labels)
    with pytest.raises(ValueError, match="outside"):
        ImageSource("x", ["a"], images, labels, images, labels)
    with pytest.raises(ValueError, match="differ in shape"):
        ImageSource("x", ["a", "b"], images, labels, images[:, :1], labels)


def test_registry_lists_every_source_and_rejects_unknown_names() -> None:
    expected = {"fashion-mnist", "mnist", "cifar10", "cifar100", "tiny-imagenet", "folder"}
    assert expected | {"procedural"} == set(DATASETS.names())
    with pytest.raises(UserError, match="unknown dataset 'cifar-10'; known: cifar10"):
        load_source("cifar-10", "/nonexistent")


def test_missing_root_is_a_user_error(tmp_path: Path) -> None:
    for name in ("mnist", "cifar10", "cifar100", "tiny-imagenet", "folder"):
        with pytest.raises(UserError, match="dataset root does not exist"):
            load_source(name, tmp_path / "nope")
    with pytest.raises(UserError, match="needs --root DIR: the folder that holds cifar-10"):
        load_source("cifar10")


# ---------------------------------------------------------------- IDX


def test_idx_writer_produces_the_official_header(tmp_path: Path) -> None:
    data = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    assert data[:16] == bytes.fromhex("00000803 00000002 00000003 00000004")
    assert data[16:] == bytes(range(24))
    assert idx_bytes(np.array([7, 9], np.uint8)) == bytes.fromhex("00000801 00000002 07 09")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    written = write_mnist_like(tmp_path, n_train=30, n_test=10, gz=gz)
    assert_matches(load_source("mnist", tmp_path), written)
    fashion = load_source("fashion-mnist", tmp_path)
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert fashion.image_shape == (1, 28, 28)


def test_idx_missing_file_names_it_and_the_layout(tmp_path: Path) -> None:
    write_mnist_like(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte.gz: missing file .*official"):
        load_source("mnist", tmp_path)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01" + path.read_bytes()[4:])
    with pytest.raises(
        UserError, match=r"not an IDX file with magic 0x00000803 \(found 00000801\)"
    ):
        load_source("mnist", tmp_path, cache=False)


def test_idx_size_mismatch(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError, match=r"header says 30x28x28 .* truncated"):
        load_source("mnist", tmp_path, cache=False)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    write_mnist_like(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz: truncated or corrupt gzip"):
        load_source("mnist", tmp_path, cache=False)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="truncated or corrupt gzip"):
        load_source("mnist", tmp_path, cache=False)


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, n_train=30)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8))
    with pytest.raises(UserError, match="29 labels but train-images-idx3-ubyte.gz holds 30"):
        load_source("mnist", tmp_path, cache=False)


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(private_cache: Path) -> None:
    source = load_source("fashion-mnist")
    assert source.train_images.shape == (60000, 1, 28, 28)
    assert source.test_images.shape == (10000, 1, 28, 28)
    assert np.bincount(source.train_labels).tolist() == [6000] * 10
    assert np.bincount(source.test_labels).tolist() == [1000] * 10
    assert source.train_labels[0] == 9 and source.class_names[9] == "Ankle boot"
    # raw oracle: the first training image straight from the gzip
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as fh:
        first = np.frombuffer(fh.read(16 + 784)[16:], np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(source.train_images[0, 0], first)
    assert len(list((private_cache / "decoded").glob("fashion-mnist-*.npz"))) == 1
    again = load_source("fashion-mnist")
    np.testing.assert_array_equal(again.test_images, source.test_images)


# ---------------------------------------------------------------- cache


def test_cache_is_used_then_rebuilt_when_corrupt_or_stale(
    tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    written = write_mnist_like(data)
    assert_matches(load_source("mnist", data), written)
    (cached,) = (private_cache / "decoded").glob("mnist-*.npz")
    fmt = DATASETS.get("mnist")
    calls = []
    original = type(fmt).decode

    def counting(self, root, files):
        calls.append(root)
        return original(self, root, files)

    monkeypatch.setattr(type(fmt), "decode", counting)
    assert_matches(load_source("mnist", data), written)
    assert calls == []  # served from the cache
    with np.load(cached, allow_pickle=False) as npz:  # no pickled objects inside
        assert set(npz.files) >= {"train_images", "class_names", "name"}
    cached.write_bytes(cached.read_bytes()[:1000])
    assert_matches(load_source("mnist", data), written)
    assert len(calls) == 1  # corrupt file silently rebuilt
    assert_matches(load_source("mnist", data), written)
    assert len(calls) == 1
    newer = write_mnist_like(data, seed=1)  # same names and sizes, new content and mtime
    assert_matches(load_source("mnist", data), newer)
    assert len(calls) == 2
    assert_matches(load_source("mnist", data, cache=False), newer)
    assert len(calls) == 3


def test_cache_fingerprint_depends_on_file_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"123")
    first = cache_module.fingerprint("mnist", tmp_path, [path])
    assert first == cache_module.fingerprint("mnist", tmp_path, [path])
    assert first != cache_module.fingerprint("fashion-mnist", tmp_path, [path])
    path.write_bytes(b"1234")
    assert first != cache_module.fingerprint("mnist", tmp_path, [path])


# ---------------------------------------------------------------- default roots and download


@pytest.fixture
def no_system_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = {name: tmp_path / "absent" / name for name in fetch.SYSTEM_DIRS}
    monkeypatch.setattr(fetch, "SYSTEM_DIRS", absent)


def test_default_root_prefers_the_system_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "usr-share" / "mnist"
    written = write_mnist_like(system)
    monkeypatch.setattr(fetch, "SYSTEM_DIRS", {"mnist": system, "fashion-mnist": system})
    monkeypatch.setattr(fetch, "URL_BASES", {})  # any download attempt would fail
    assert_matches(load_source("mnist"), written)


def test_default_root_downloads_into_the_cache(
    tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch, no_system_dirs
) -> None:
    mirror = tmp_path / "mirror"
    written = write_mnist_like(mirror)
    monkeypatch.setattr(fetch, "URL_BASES", {"mnist": mirror.as_uri() + "/"})
    assert_matches(load_source("mnist"), written)
    assert fetch.has_idx_files(private_cache / "mnist")
    monkeypatch.setattr(fetch, "URL_BASES", {})  # second time: found in the cache, no download
    assert_matches(load_source("mnist", cache=False), written)


def test_failed_download_says_what_to_install(
    tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch, no_system_dirs
) -> None:
    mirror = tmp_path / "mirror"
    write_mnist_like(mirror)
    (mirror / "t10k-images-idx3-ubyte.gz").unlink()
    monkeypatch.setattr(fetch, "URL_BASES", {"fashion-mnist": mirror.as_uri() + "/"})
    with pytest.raises(UserError, match="install the Debian package dataset-fashion-mnist or pass"):
        load_source("fashion-mnist")
    target = private_cache / "fashion-mnist"
    assert not (target / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(target.glob(".*tmp"))  # no partial file left behind


# ---------------------------------------------------------------- CIFAR


def test_cifar10_round_trip_and_channel_major_rows(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path, n_per_class=5, n_test_per_class=2)
    source = load_source("cifar10", tmp_path)
    assert_matches(source, written)
    assert source.class_names[0] == "airplane" and source.image_shape == (3, 32, 32)
    # hand oracle on the raw row: R plane, then G, then B, each row-major 32x32
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        row = pickle.load(fh, encoding="bytes")[b"data"][0]
    image = source.train_images[0]
    assert (image[0, 0, 0], image[0, 0, 1], image[0, 1, 0]) == (row[0], row[1], row[32])
    assert (image[1, 0, 0], image[2, 0, 0], image[2, 31, 31]) == (row[1024], row[2048], row[3071])
    # the folder itself is accepted as root too
    assert_matches(load_source("cifar10", tmp_path / "cifar-10-batches-py"), written)


def test_cifar_writer_matches_python2_pickles(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_per_class=1, n_test_per_class=1)
    data = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    assert data[:2] == b"\x80\x02"  # protocol 2
    ops = list(pickletools.genops(data))
    globals_ = {arg for op, arg, _ in ops if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    strings = {arg for op, arg, _ in ops if op.name in ("SHORT_BINSTRING", "BINSTRING")}
    assert {"data", "labels", "filenames", "batch_label"} <= strings
    assert not any(op.name in ("BINUNICODE", "BINBYTES", "SHORT_BINBYTES") for op, _, _ in ops)
    batch = pickle.loads(data, encoding="bytes")
    assert set(batch) == {b"data", b"labels", b"filenames", b"batch_label"}
    assert batch[b"data"].shape == (2, 3072) and batch[b"data"].dtype == np.uint8


def test_cifar100_uses_fine_labels_and_accepts_str_keys(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path, n_per_class=2, n_test_per_class=1)
    assert_matches(load_source("cifar100", tmp_path), written)
    # a python3 pickle with str keys is read the same way
    folder = tmp_path / "cifar-100-python"
    batch = pickle.loads((folder / "test").read_bytes(), encoding="bytes")
    batch = {k.decode(): v for k, v in batch.items()}
    (folder / "test").write_bytes(pickle.dumps(batch, protocol=4))
    assert_matches(load_source("cifar100", tmp_path, cache=False), written)


class _WritesFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({str(self.path)!r}, 'w').close()",))


def test_malicious_pickles_are_refused_without_running_anything(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_per_class=1, n_test_per_class=1)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    sentinel = tmp_path / "sentinel"
    payloads = {
        "os.system": f"cos\nsystem\n(S'touch {sentinel}'\ntR.".encode(),
        "builtins.exec": pickle.dumps({"data": _WritesFile(sentinel)}, protocol=4),
    }
    for global_name, payload in payloads.items():
        batch.write_bytes(payload)
        message = f"data_batch_3: refused to unpickle global '{global_name}' (not a plain CIFAR"
        with pytest.raises(UserError, match=re.escape(message)):
            load_source("cifar10", tmp_path, cache=False)
        assert not sentinel.exists()
    pickle.loads(payloads["builtins.exec"])  # the payload is real: plain pickle runs it
    assert sentinel.exists()


def test_cifar_missing_and_truncated_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_per_class=1, n_test_per_class=1)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "test_batch").rename(tmp_path / "kept")
    with pytest.raises(UserError, match=r"test_batch: missing file \(the official layout is cifar"):
        load_source("cifar10", tmp_path)
    (tmp_path / "kept").rename(folder / "test_batch")
    data = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="data_batch_2: not a readable CIFAR archive"):
        load_source("cifar10", tmp_path)
    batch = pickle.loads(data, encoding="bytes")
    batch[b"labels"] = batch[b"labels"][:-1]
    (folder / "data_batch_2").write_bytes(py2_pickle(batch))
    with pytest.raises(UserError, match="data_batch_2: 1 labels but 2 images"):
        load_source("cifar10", tmp_path)


def test_cifar10_writer_is_fast_at_full_size(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path, n_per_class=5000, n_test_per_class=1000)
    source = load_source("cifar10", tmp_path, cache=False)
    assert source.train_images.shape == (50000, 3, 32, 32)
    assert np.bincount(source.test_labels).tolist() == [1000] * 10
    np.testing.assert_array_equal(source.train_images[-1], written.train_images[-1])


# ---------------------------------------------------------------- Tiny-ImageNet


def test_tiny_imagenet_round_trip(tmp_path: Path) -> None:
    wnids = ["n03000000", "n01000000", "n02000000"]
    written = write_tiny_imagenet(tmp_path, wnids, n_train=3, n_val_per_class=4)
    source = load_source("tiny-imagenet", tmp_path)
    assert source.class_names == ["thing n01000000", "thing n02000000", "thing n03000000"]
    assert source.image_shape == (3, 16, 16)
    np.testing.assert_array_equal(source.train_labels, written.train_labels)
    np.testing.assert_array_equal(source.test_labels, written.test_labels)
    # JPEG is lossy: flat colours survive within a few levels, enough to identify every image
    diff = np.abs(source.train_images.astype(int) - written.train_images).max()
    assert diff <= 4
    assert np.abs(source.test_images.astype(int) - written.test_images).max() <= 4


def test_tiny_imagenet_val_image_without_annotation(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path, ["n01", "n02"], n_train=1, n_val_per_class=1)
    val = tmp_path / "tiny-imagenet-200" / "val"
    Image.new("RGB", (16, 16)).save(val / "images" / "val_99.JPEG", format="JPEG")
    with pytest.raises(UserError, match=r"val_99.JPEG: not listed in val/val_annotations.txt"):
        load_source("tiny-imagenet", tmp_path)
    (val / "images" / "val_99.JPEG").unlink()
    (val / "images" / "val_0.JPEG").unlink()
    with pytest.raises(UserError, match="val_0.JPEG: listed in val_annotations.txt but missing"):
        load_source("tiny-imagenet", tmp_path)
    (val / "val_annotations.txt").write_text("val_1.JPEG\tn77\t0\t0\t1\t1\n")
    with pytest.raises(UserError, match=r"val_annotations.txt:1: wnid 'n77' is not in wnids"):
        load_source("tiny-imagenet", tmp_path)
    (val / "val_annotations.txt").unlink()
    with pytest.raises(UserError, match="val_annotations.txt: missing file"):
        load_source("tiny-imagenet", tmp_path)


# ---------------------------------------------------------------- folder tree


@pytest.mark.parametrize("gray", [False, True])
def test_folder_tree_round_trip(tmp_path: Path, gray: bool) -> None:
    written = write_folder_tree(tmp_path, ["zebra", "ant", "moth"], size=(8, 6), gray=gray)
    (tmp_path / "train" / "ant" / "notes.txt").write_text("ignored")
    source = load_source("folder", tmp_path)
    assert source.class_names == ["ant", "moth", "zebra"]
    assert source.image_shape == ((1 if gray else 3), 6, 8)
    assert_matches(source, written)


def test_folder_tree_errors(tmp_path: Path) -> None:
    write_folder_tree(tmp_path, ["a", "b"], size=(8, 8))
    odd = tmp_path / "train" / "b" / "odd.png"
    Image.new("RGB", (8, 9)).save(odd)
    with pytest.raises(UserError, match=r"b/odd.png: image is 8x9 but .* must share one size"):
        load_source("folder", tmp_path)
    odd.write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"odd.png: not a readable image"):
        load_source("folder", tmp_path)
    odd.unlink()
    (tmp_path / "test" / "c").mkdir()
    with pytest.raises(UserError, match=r"test/c: class folder not present in train/"):
        load_source("folder", tmp_path)
    (tmp_path / "test" / "c").rmdir()
    for path in (tmp_path / "test").rglob("*.png"):
        path.unlink()
    assert load_source("folder", tmp_path).test_images.shape == (0, 3, 8, 8)
    for path in (tmp_path / "train" / "a").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"train/a: no images"):
        load_source("folder", tmp_path)


# ---------------------------------------------------------------- procedural


def test_procedural_is_deterministic_and_learnable() -> None:
    source = load_source("procedural")
    assert source.image_shape == (1, 28, 28) and source.num_classes == 10
    assert np.bincount(source.train_labels).tolist() == [600] * 10
    assert np.bincount(source.test_labels).tolist() == [100] * 10
    again = make_procedural()
    np.testing.assert_array_equal(again.train_images, source.train_images)
    assert not np.array_equal(make_procedural(seed=1).train_images, source.train_images)
    # nearest class mean on raw pixels (an independent, trivial learner) is far above chance
    x = source.train_images.reshape(len(source.train_images), -1).astype(np.float32)
    means = np.stack([x[source.train_labels == c].mean(0) for c in range(10)])
    xt = source.test_images.reshape(len(source.test_images), -1).astype(np.float32)
    pred = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == source.test_labels).mean() > 0.6
