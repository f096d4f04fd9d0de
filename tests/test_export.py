"""`ltdd export`: the folder tree reads back through ltdd's own `folder` source (same images within
8-bit quantisation, same labels), npz/pt hold the plain arrays, and bad input leaves nothing."""

import csv
import json

import numpy as np
import pytest
import torch

from ltdd.cli import main
from ltdd.commands import load_set_and_data
from ltdd.data.sources import load_source
from ltdd.distilled import DistilledSet
from ltdd.export import Exportable, class_folder, export_set, write_folder

PROC = ["--dataset", "procedural", "--imbalance-factor", "10"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A hard-label random baseline and a soft-label set made from it (random logits)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("sets")
    hard = folder / "hard.safetensors"
    assert main(["baseline", "random", *PROC, "--ipc", "3", "--out", str(hard)]) == 0
    base = DistilledSet.load(hard)
    logits = torch.randn(len(base.labels), 10, generator=torch.Generator().manual_seed(0))
    soft = DistilledSet(base.images, logits, 0.0123, dict(base.meta), base.labels.clone())
    soft.save(folder / "soft.safetensors")
    return {"hard": hard, "soft": folder / "soft.safetensors"}


def _pictures(path):
    """What `ltdd show` draws: the preprocessing inverted, in [0, 1]."""
    distilled, data = load_set_and_data(path, None)
    return distilled, data, data.preprocessing.inverse_transform(distilled.images)


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_folder_export_reads_back_through_the_folder_source(tmp_path, sets, kind):
    out = tmp_path / "export"
    assert main(["export", str(sets[kind]), "--format", "folder", "--out", str(out)]) == 0
    distilled, data, pictures = _pictures(sets[kind])
    source = load_source("folder", out, cache=False)
    assert source.class_names == [class_folder(c, n, 10) for c, n in enumerate(data.class_names)]
    assert source.train_images.shape == tuple(pictures.shape)
    assert len(source.test_images) == 0
    labels = json.loads((out / "labels.json").read_text())
    order = torch.tensor([row["index"] for row in labels["images"]])  # file order -> set index
    assert sorted(order.tolist()) == list(range(len(pictures)))
    back = torch.from_numpy(source.train_images).float() / 255
    assert float((back - pictures[order]).abs().max()) <= 0.5 / 255 + 1e-6  # 8-bit rounding
    assert torch.equal(torch.from_numpy(source.train_labels), distilled.class_ids[order])
    assert labels["lr"] == distilled.lr
    assert labels["label_kind"] == kind
    assert labels["class_names"] == data.class_names
    files = [row["file"] for row in labels["images"]]
    assert files == sorted(files)  # the folder source's order: class folders, then file names
    with open(out / "labels.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:4] == ["file", "index", "class", "lr"]
    assert [r[0] for r in rows[1:]] == files
    assert [int(r[1]) for r in rows[1:]] == order.tolist()
    assert [int(r[2]) for r in rows[1:]] == distilled.class_ids[order].tolist()
    assert {float(r[3]) for r in rows[1:]} == {distilled.lr}
    if kind == "soft":
        json_soft = torch.tensor([row["soft_label"] for row in labels["images"]])
        csv_soft = torch.tensor([[float(v) for v in r[4:]] for r in rows[1:]])
        assert torch.equal(json_soft, distilled.labels[order])
        assert torch.equal(csv_soft, distilled.labels[order])
        assert len(rows[0]) == 4 + 10
    else:
        assert len(rows[0]) == 4 and "soft_label" not in labels["images"][0]


def test_rgb_pictures_round_trip_through_png(tmp_path):
    g = np.random.default_rng(0)
    pictures = g.integers(0, 256, (6, 3, 5, 4), dtype=np.uint8)
    classes = torch.tensor([2, 0, 1, 0, 2, 1])  # not class-sorted: files are
    meta = {"dataset": "x", "imbalance_factor": 1.0, "ipc": 2, "method": "m", "data": {}}
    distilled = DistilledSet(torch.zeros(6, 3, 5, 4), classes, 0.01, meta)
    write_folder(Exportable(distilled, pictures, ["cat/dog", "b", "c"]), tmp_path / "t")
    source = load_source("folder", tmp_path / "t", cache=False)
    assert source.class_names == ["0_cat_dog", "1_b", "2_c"]
    order = torch.argsort(classes, stable=True).numpy()
    assert np.array_equal(source.train_images, pictures[order])
    assert np.array_equal(source.train_labels, classes.numpy()[order])


def test_npz_and_pt_hold_the_plain_arrays(tmp_path, sets):
    distilled, data, pictures = _pictures(sets["soft"])
    export_set(sets["soft"], tmp_path / "n", "npz")
    export_set(sets["soft"], tmp_path / "p", "pt")
    npz = np.load(tmp_path / "n" / "distilled.npz", allow_pickle=False)
    pt = torch.load(tmp_path / "p" / "distilled.pt", weights_only=True)
    expected_pictures = np.rint(pictures.numpy() * 255).astype(np.uint8)
    for arrays in (npz, {k: np.asarray(v) for k, v in pt.items() if torch.is_tensor(v)}):
        assert np.array_equal(arrays["images"], distilled.images.numpy())
        assert np.array_equal(arrays["pictures"], expected_pictures)
        assert np.array_equal(arrays["labels"], distilled.labels.numpy())
        assert np.array_equal(arrays["classes"], distilled.class_ids.numpy())
        assert float(arrays["lr"]) == pytest.approx(distilled.lr)
    assert list(npz["class_names"]) == data.class_names == pt["class_names"]
    assert json.loads(str(npz["meta"]))["label_kind"] == "soft" == pt["meta"]["label_kind"]


def _one_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return [line for line in err if line.startswith("ltdd: error:")]


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, sets, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["export", str(sets["soft"]), "--out", str(taken)]) == 2
    assert "already exists" in _one_error(capsys)[0]
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    missing = tmp_path / "nope.safetensors"
    assert main(["export", str(missing), "--out", str(tmp_path / "a")]) == 2
    assert "no such file" in _one_error(capsys)[0]
    with pytest.raises(SystemExit) as exc:
        main(["export", str(sets["soft"]), "--format", "tiff", "--out", str(tmp_path / "b")])
    assert exc.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_failure_mid_export_leaves_no_folder(tmp_path, sets, monkeypatch):
    from ltdd import export

    def broken(item, out):
        write_folder(item, out)
        raise RuntimeError("disk full")

    monkeypatch.setitem(export.EXPORTERS._items, "folder", broken)
    with pytest.raises(RuntimeError):
        export_set(sets["soft"], tmp_path / "out", "folder")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_existing_folder_is_filled(tmp_path, sets):
    (tmp_path / "out").mkdir()
    export_set(sets["hard"], tmp_path / "out", "npz")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["distilled.npz"]
