import json

import numpy as np
import pytest

from ltdd.cli import main
from ltdd.data.dataset import DataConfig, describe, prepare_data, split_longtail
from ltdd.data.longtail import index_sha256, longtail_counts, longtail_indices
from ltdd.data.sources import load_source
from ltdd.errors import UserError

from helpers_formats import write_cifar10

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.mark.parametrize(
    "n_max, beta, expected",
    [  # reference-pipeline §1.2 and published-results §5.1
        (5000, 10, [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]),
        (5000, 50, [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100]),
        (5000, 100, [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]),
        (5000, 200, [5000, 2775, 1540, 854, 474, 263, 146, 81, 45, 25]),
        (6000, 50, [6000, 3884, 2515, 1628, 1054, 682, 442, 286, 185, 120]),
        (1000, 200, [1000, 555, 308, 170, 94, 52, 29, 16, 9, 5]),
        (7, 1, [7] * 10),
    ],
)
def test_counts_match_the_published_profiles(n_max, beta, expected):
    assert longtail_counts(n_max, 10, beta) == expected


@pytest.mark.parametrize(
    "classes, beta, total", [(100, 10, 19573), (100, 20, 15907), (200, 10, 39072), (200, 20, 31711)]
)
def test_totals_of_the_hundred_and_two_hundred_class_profiles(classes, beta, total):
    assert sum(longtail_counts(500, classes, beta)) == total


def test_beta_below_one_is_refused():
    with pytest.raises(UserError, match="imbalance factor must be >= 1"):
        longtail_counts(100, 10, 0.5)


def test_selection_is_seeded_without_replacement_and_fingerprinted():
    labels = np.repeat(np.arange(4), 50)[np.random.default_rng(0).permutation(200)]
    counts = longtail_counts(50, 4, 10)
    a = longtail_indices(labels, counts, seed=3)
    assert np.array_equal(a, longtail_indices(labels, counts, seed=3))
    assert not np.array_equal(a, longtail_indices(labels, counts, seed=4))
    assert len(set(a.tolist())) == len(a) == sum(counts)
    assert np.bincount(labels[a]).tolist() == counts
    assert index_sha256(a) != index_sha256(longtail_indices(labels, counts, seed=4))


def test_cifar10_archives_in_the_official_format_give_the_published_counts(tmp_path):
    write_cifar10(tmp_path, n_per_class=5000, n_test_per_class=1000)
    out = tmp_path / "data.json"
    args = ["data", "--dataset", "cifar10", "--root", str(tmp_path), "--imbalance-factor", "100"]
    assert main([*args, "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["train_counts"] == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert summary["test_counts"] == [1000] * 10
    assert summary["image_shape"] == [3, 32, 32] and summary["num_classes"] == 10
    assert main([*args[:-1], "200", "--test-profile", "long-tailed", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["test_counts"] == [1000, 555, 308, 170, 94, 52, 29, 16, 9, 5]


@pytest.mark.skipif(not __import__("os").path.exists(FASHION), reason="Fashion-MNIST not installed")
def test_fashion_mnist_counts_from_the_command_line(tmp_path):
    out = tmp_path / "d.json"
    assert main(["data", "--imbalance-factor", "100", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["train_counts"] == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert summary["test_counts"] == [1000] * 10
    assert len(summary["index_sha256"]) == 64
    assert (
        main(
            [
                "data",
                "--imbalance-factor",
                "200",
                "--test-profile",
                "long-tailed",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["test_counts"] == [1000, 555, 308, 170, 94, 52, 29, 16, 9, 5]


def test_prepared_data_keeps_the_split_and_carves_validation():
    cfg = DataConfig(dataset="procedural", imbalance_factor=10, val_per_class=5)
    data = prepare_data(cfg)
    source = load_source("procedural")
    split = split_longtail(source, cfg)
    full = longtail_counts(len(source.train_labels) // 10, 10, 10)
    assert data.train_counts == [n - 5 for n in full]
    assert np.bincount(data.train_labels.numpy()).tolist() == data.train_counts
    assert np.bincount(data.val_labels.numpy()).tolist() == [5] * 10
    assert not set(split.train_indices) & set(split.val_indices)
    assert data.train_images.dtype.is_floating_point and data.train_images.shape[1:] == (1, 28, 28)
    assert abs(float(data.train_images.mean())) < 1e-3  # whitened training data is centred
    assert describe(cfg)["index_sha256"] == data.info["index_sha256"]


def test_validation_larger_than_a_class_is_refused():
    with pytest.raises(UserError, match="val_per_class"):
        prepare_data(DataConfig(dataset="procedural", imbalance_factor=100, val_per_class=500))


def test_held_out_validation_comes_from_images_the_selection_left_out():
    source = load_source("procedural")
    carved = DataConfig(dataset="procedural", imbalance_factor=10, val_per_class=5)
    held = DataConfig(
        dataset="procedural", imbalance_factor=10, val_per_class=5, val_from="held-out"
    )
    selected = set(
        split_longtail(source, DataConfig(dataset="procedural", imbalance_factor=10)).train_indices
    )
    split = split_longtail(source, held)
    full = longtail_counts(len(source.train_labels) // 10, 10, 10)
    # the head keeps no image out, so its validation is carved; every other class keeps its images
    assert split.train_counts == [full[0] - 5, *full[1:]]
    assert split.val_counts == [5] * 10
    val = set(split.val_indices)
    assert not val & set(split.train_indices) and len(val) == 50
    assert len(val - selected) == 45  # all but the head's 5 were never in the long-tailed split
    assert np.bincount(source.train_labels[split.val_indices], minlength=10).tolist() == [5] * 10
    assert index_sha256(split_longtail(source, carved).val_indices) != index_sha256(
        split.val_indices
    )
    assert split_longtail(source, held).val_indices.tolist() == split.val_indices.tolist()
    too_many = DataConfig(
        dataset="procedural", imbalance_factor=10, val_per_class=full[0], val_from="held-out"
    )
    with pytest.raises(UserError, match="none left out"):
        split_longtail(source, too_many)
