"""The Python API (`ltdd.__all__`): each function against the CLI or an independent oracle."""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

import ltdd
from ltdd.cli import main
from ltdd.data.dataset import DataConfig, describe
from ltdd.distilled import DistilledSet

PROC = ["--dataset", "procedural", "--imbalance-factor", "10"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A hard-label random baseline and a soft-label set made from it (random logits)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("sets")
    hard = folder / "hard.safetensors"
    assert main(["baseline", "random", *PROC, "--ipc", "2", "--out", str(hard)]) == 0
    base = DistilledSet.load(hard)
    logits = torch.randn(len(base.labels), 10, generator=torch.Generator().manual_seed(0))
    DistilledSet(base.images, logits, 0.02, dict(base.meta), base.labels.clone()).save(
        folder / "soft.safetensors"
    )
    return {"hard": hard, "soft": folder / "soft.safetensors"}


def test_the_api_is_listed_once_and_documented():
    for name in ltdd.__all__:
        obj = getattr(ltdd, name)
        if callable(obj) and not isinstance(obj, type(ltdd.MODELS)):
            assert obj.__doc__, name
    public = {n for n in dir(ltdd) if not n.startswith("_")}
    submodules = {n for n in public if isinstance(getattr(ltdd, n), types.ModuleType)}
    assert public - submodules == set(ltdd.__all__) - {"__version__"}  # nothing else leaks
    assert callable(ltdd.evaluate_distilled) and not callable(ltdd.evaluate)  # a sub-package


def test_load_distilled_in_model_space_with_each_label_form(sets):
    stored = DistilledSet.load(sets["soft"])
    ds = ltdd.load_distilled(sets["soft"])
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == 20
    assert torch.equal(ds.images, stored.images) and torch.equal(ds.targets, stored.labels)
    assert ds.lr == pytest.approx(0.02) and ds.label_kind == "soft" and ds.space == "model"
    assert ds.class_names == stored.meta["class_names"] and ds.num_classes == 10
    image, target = ds[3]
    assert torch.equal(image, stored.images[3]) and torch.equal(target, stored.labels[3])
    batch = next(iter(DataLoader(ds, batch_size=8)))
    assert batch[0].shape == (8, 1, 28, 28) and batch[1].shape == (8, 10)
    hard = ltdd.load_distilled(sets["soft"], labels="hard")
    assert torch.equal(hard.targets, stored.classes)
    probs = ltdd.load_distilled(sets["soft"], labels="probs").targets
    assert torch.allclose(probs.sum(dim=1), torch.ones(20))
    expected = np.exp(stored.labels.double().numpy())
    assert np.allclose(probs.numpy(), expected / expected.sum(axis=1, keepdims=True), atol=1e-6)
    onehot = ltdd.load_distilled(sets["hard"], labels="probs").targets
    assert torch.equal(onehot.argmax(dim=1), DistilledSet.load(sets["hard"]).labels)
    assert torch.equal(onehot.sum(dim=1), torch.ones(20))
    with pytest.raises(ltdd.UserError, match="labels must be"):
        ltdd.load_distilled(sets["soft"], labels="logits")


def test_load_distilled_as_pixels_inverts_the_preprocessing(sets):
    ds = ltdd.load_distilled(sets["hard"], space="pixels")
    data = ltdd.longtail_split("procedural", 10)
    assert ds.space == "pixels" and float(ds.images.min()) >= 0 and float(ds.images.max()) <= 1
    # real images: mapping the pictures forward again gives back the stored model-space tensors
    again = data.preprocessing.transform(ds.images)
    assert torch.allclose(again, DistilledSet.load(sets["hard"]).images, atol=1e-3)
    # and the pictures are the dataset's own 8-bit images
    assert torch.allclose(ds.images * 255, (ds.images * 255).round(), atol=2e-3)


def test_longtail_split_follows_the_profile_and_the_cli(tmp_path):
    data = ltdd.longtail_split("procedural", imbalance_factor=10, seed=3, zca=False)
    assert isinstance(data, ltdd.LongTailedData)
    n_max, beta = 600, 10.0
    assert data.train_counts == [int(np.floor(n_max * beta ** (-c / 9) + 1e-9)) for c in range(10)]
    assert torch.equal(torch.bincount(data.train_labels), torch.tensor(data.train_counts))
    cli = describe(DataConfig(dataset="procedural", imbalance_factor=10, seed=3))
    assert data.info["index_sha256"] == cli["index_sha256"]
    assert data.preprocessing.zca_ is None
    with pytest.raises(ltdd.UserError, match="imbalance_factor must be >= 1"):
        ltdd.longtail_split("procedural", imbalance_factor=0.5)


RUN = {
    "name": "api",
    "ipc": 2,
    "methods": ["random"],
    "data": {"dataset": "procedural", "imbalance_factor": 10},
    "evaluate": {"seeds": 2, "train": {"epochs": 2, "width": 4}, "full_data": False},
}


def test_run_from_a_dict_and_from_yaml_gives_the_run_and_its_results(tmp_path):
    torch.set_num_threads(1)
    result = ltdd.run({**RUN, "runs_dir": str(tmp_path)})
    assert isinstance(result, ltdd.RunResult)
    assert result.run_dir == tmp_path / "api" and result.report.is_file()
    assert result.sets == {
        "random": tmp_path / "api" / "distill" / "random" / "distilled.safetensors"
    }
    on_disk = json.loads((tmp_path / "api" / "eval" / "random.json").read_text())
    assert result.results == {"random": on_disk}
    assert result.accuracy("random") == on_disk["balanced"]["accuracy"]
    assert len(result.accuracy("random", "long-tailed")["runs"]) == 2
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**RUN, "runs_dir": str(tmp_path)}))
    again = ltdd.run(config, ["evaluate.seeds=2"])  # same config: every stage is reused
    assert again.results == result.results
    stamp = (tmp_path / "api" / "eval" / "random.stage.json").stat().st_mtime_ns
    changed = ltdd.run(config, ["evaluate.seeds=1"])
    assert len(changed.accuracy("random")["runs"]) == 1
    assert (tmp_path / "api" / "eval" / "random.stage.json").stat().st_mtime_ns != stamp


def test_evaluate_distilled_equals_ltdd_evaluate(tmp_path, sets):
    torch.set_num_threads(1)
    out = tmp_path / "cli.json"
    argv = ["evaluate", str(sets["soft"]), "--epochs", "3", "--seeds", "2", "--width", "4"]
    assert main([*argv, "--test-profile", "balanced", "--json", str(out)]) == 0
    cli = json.loads(out.read_text())
    api = ltdd.evaluate_distilled(
        ltdd.load_distilled(sets["soft"]), epochs=3, seeds=2, width=4, test_profile="balanced"
    )
    assert api["balanced"] == cli["balanced"] and api["settings"] == cli["settings"]


class Counting:
    """A model factory of the user's own: a linear model, counting its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, num_classes, image_shape):
        self.calls.append((num_classes, image_shape))
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(image_shape)), num_classes))


def test_evaluate_distilled_trains_a_users_model_factory(sets):
    torch.set_num_threads(1)
    factory = Counting()
    names = ltdd.MODELS.names()
    result = ltdd.evaluate_distilled(
        sets["hard"], model=factory, epochs=5, seeds=2, test_profile="balanced"
    )
    assert factory.calls == [(10, (1, 28, 28))] * 2
    assert result["settings"]["train"]["model"] == "user factory"
    runs = result["balanced"]["accuracy"]["runs"]
    assert len(runs) == 2 and all(0 <= r <= 1 for r in runs)
    assert ltdd.MODELS.names() == names  # registered only while evaluating
    again = ltdd.evaluate_distilled(
        sets["hard"], model=Counting(), epochs=5, seeds=2, test_profile="balanced"
    )
    assert again["balanced"] == result["balanced"]  # seeded: the same networks
    with pytest.raises(ltdd.UserError, match="lr > 0"):
        ltdd.evaluate_distilled(sets["hard"], lr=0.0)


def test_a_users_model_and_dataset_source_plug_into_the_registries(tmp_path, sets):
    torch.set_num_threads(1)

    @ltdd.MODELS.register("test-mlp")
    def mlp(num_classes, image_shape, hidden=16):
        c, h, w = image_shape
        return nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    class Stripes(ltdd.DatasetFormat):
        name = "test-stripes"
        layout = "nothing (generated)"
        cacheable = False

        def locate(self, root):
            return Path(".")

        def files(self, root):
            return []

        def decode(self, root, files):
            rng = np.random.default_rng(0)
            labels = np.repeat(np.arange(3), 40)
            images = rng.integers(0, 60, (120, 1, 8, 8), dtype=np.uint8)
            for i, c in enumerate(labels):
                images[i, 0, 3 * c : 3 * c + 2, :] += 150  # a bright row pair
            return ltdd.ImageSource("test-stripes", ["l", "m", "r"], images, labels, images, labels)

    try:
        model = ltdd.create_model("test-mlp", 3, (1, 6, 6), seed=0, hidden=8)
        assert model(torch.zeros(2, 1, 6, 6)).shape == (2, 3) and model[1].out_features == 8
        with pytest.raises(ltdd.UserError, match="no option width; allowed: hidden"):
            ltdd.create_model("test-mlp", 3, (1, 6, 6), width=8)
        ltdd.register_dataset(Stripes())
        assert "test-stripes" in ltdd.DATASETS.names()
        data = ltdd.longtail_split("test-stripes", imbalance_factor=4)
        assert data.train_counts == [40, 20, 10]
        result = ltdd.run(
            {
                "name": "plug",
                "runs_dir": str(tmp_path),
                "ipc": 2,
                "methods": ["random"],
                "data": {"dataset": "test-stripes", "imbalance_factor": 4},
                "evaluate": {
                    "seeds": 1,
                    "train": {"epochs": 30, "width": 4},
                    "archs": ["test-mlp"],
                    "full_data": False,
                },
            }
        )
        assert result.results["random@test-mlp"]["settings"]["train"]["model"] == "test-mlp"
        assert result.accuracy("random@test-mlp")["mean"] > 0.5  # chance is 1/3
    finally:
        ltdd.MODELS.unregister("test-mlp")
        ltdd.DATASETS.unregister("test-stripes")
    with pytest.raises(ltdd.UserError, match="unknown model 'test-mlp'"):
        ltdd.create_model("test-mlp", 3, (1, 6, 6))


def test_export_distilled_takes_a_dataset_or_a_path(tmp_path, sets):
    out = ltdd.export_distilled(ltdd.load_distilled(sets["hard"]), tmp_path / "e", "npz")
    assert out == tmp_path / "e"
    arrays = np.load(out / "distilled.npz")
    assert np.array_equal(arrays["labels"], DistilledSet.load(sets["hard"]).labels.numpy())


def test_importing_ltdd_and_drawing_leave_the_users_matplotlib_backend_alone(tmp_path):
    code = (
        "import matplotlib; matplotlib.use('svg'); import torch, ltdd;"
        "from ltdd.report.grid import save_class_grid;"
        "save_class_grid(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), ['a', 'b'],"
        f" r'{tmp_path}/g.png');"
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
