"""`--tracker`: TensorBoard (the real library) and wandb (a fake module recording calls) receive
what metrics.jsonl holds plus image grids; a missing package is one line naming it."""

import io
import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from ltdd.cli import main
from ltdd.data.preprocess import Preprocessing
from ltdd.distilled import DistilledSet
from ltdd.report.figures import mosaic
from ltdd.tracking import numbers

TINY = [
    "ipc=2",
    "methods=[mtt]",
    "share_experts=true",
    "data.dataset=procedural",
    "data.imbalance_factor=10",
    "experts.representation={num_experts: 1, epochs: 2, width: 4, batch_size: 256, gsam: false}",
    "distill.mtt={iterations: 4, width: 4, phase1: {syn_steps: 2, max_start_epoch: 1}}",
    "evaluate.seeds=1",
    "evaluate.train={epochs: 1, width: 4}",
    "evaluate.full_data=false",
    "evaluate.ddranking=false",
    "evaluate.test_profile=balanced",
]


def run_tiny(tmp_path, *flags):
    torch.set_num_threads(1)
    argv = ["run", *TINY, f"runs_dir={tmp_path}", "name=t", "--device", "cpu", *flags]
    return main(argv)


def metrics(tmp_path):
    path = tmp_path / "t" / "distill" / "mtt" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_numbers_flattens_every_finite_number():
    record = {"loss": 1.5, "phase_losses": [0.5, 1.0], "updated": True, "x": {"y": 2}}
    record.update(name="mtt", bad=float("nan"), none=None)
    assert numbers(record) == {
        "loss": 1.5,
        "phase_losses/0": 0.5,
        "phase_losses/1": 1.0,
        "updated": 1.0,
        "x/y": 2.0,
    }


def test_tensorboard_receives_the_metrics_images_and_stage_timings(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run_tiny(tmp_path, "--tracker", "tensorboard", "--tracker-images", "2") == 0
    events = EventAccumulator(str(tmp_path / "t" / "tracking" / "tensorboard"), {"images": 0})
    events.Reload()
    tags = events.Tags()
    records = metrics(tmp_path)
    loss = events.Scalars("mtt/loss")
    assert [e.step for e in loss] == [r["iteration"] for r in records] == [1, 2, 3, 4]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert [e.value for e in events.Scalars("mtt/lr")] == pytest.approx([r["lr"] for r in records])
    assert "mtt/phase_losses/0" in tags["scalars"] and "mtt/seconds" in tags["scalars"]
    assert "stage/experts/representation/wall_s" in tags["scalars"]
    assert [e.step for e in events.Images("mtt/images")] == [2, 4]
    image = events.Images("mtt/images")[-1]
    assert (image.height, image.width) == (10 * 29, 2 * 29)  # a row per class, IPC 2
    # the last grid is the final set, preprocessing inverted, one row per class
    run = tmp_path / "t"
    final = DistilledSet.load(run / "distill" / "mtt" / "distilled.safetensors")
    pictures = Preprocessing.load(run / "preprocess.safetensors").inverse_transform(final.images)
    expected = np.rint(mosaic(pictures, final.class_ids, 10, 2) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string))), expected)


class FakeWandb(types.ModuleType):
    """Records what ltdd asks of wandb."""

    def __init__(self):
        super().__init__("wandb")
        self.calls = []
        self.logged = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        fake = self

        class Run:
            def define_metric(self, name, step_metric=None):
                fake.calls.append(("define_metric", name, step_metric))

            def log(self, values):
                fake.logged.append(values)

            def finish(self):
                fake.calls.append(("finish",))

        return Run()

    class Image:
        def __init__(self, array):
            self.array = array


def test_wandb_runs_offline_and_receives_each_record(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    assert run_tiny(tmp_path, "--tracker", "wandb", "--tracker-images", "3") == 0
    init = fake.calls[0]
    assert init[0] == "init" and init[1]["mode"] == "offline"
    assert init[1]["dir"] == str(tmp_path / "t" / "tracking")
    assert init[1]["config"]["distill"]["mtt"]["iterations"] == 4
    assert fake.calls[-1] == ("finish",)
    assert ("define_metric", "mtt/*", "mtt/step") in fake.calls
    mtt = [v for v in fake.logged if "mtt/loss" in v]
    assert [v["mtt/step"] for v in mtt] == [1, 2, 3, 4]
    assert [v["mtt/loss"] for v in mtt] == pytest.approx([r["loss"] for r in metrics(tmp_path)])
    images = [v for v in fake.logged if "mtt/images" in v]
    assert [v["mtt/step"] for v in images] == [3]
    assert images[0]["mtt/images"].array.shape == (10 * 29, 2 * 29, 3)

    # `ltdd distill` with the run's experts: the same stream, under <out>/tracking
    fake.calls.clear()
    fake.logged.clear()
    out = tmp_path / "distill"
    argv = ["distill", "data.dataset=procedural", "data.imbalance_factor=10", "distill.method=mtt"]
    argv += ["distill.ipc=2", "distill.iterations=2", "distill.width=4"]
    argv += ["distill.phase1={syn_steps: 2, max_start_epoch: 1}", "--share-experts"]
    argv += ["representation", "--experts", str(tmp_path / "t" / "experts"), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--tracker", "wandb", "--tracker-images", "0"]) == 0
    assert fake.calls[0][1]["dir"] == str(out / "tracking") and fake.calls[-1] == ("finish",)
    assert [v["mtt/step"] for v in fake.logged] == [1, 2]  # no images with K = 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [v["mtt/loss"] for v in fake.logged] == [json.loads(x)["loss"] for x in lines]


@pytest.mark.parametrize(
    ("tracker", "module"), [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")]
)
def test_a_missing_package_is_one_line_naming_it(tmp_path, monkeypatch, capsys, tracker, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    assert run_tiny(tmp_path, "--tracker", tracker) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ltdd:")]
    assert len(err) == 1
    assert f"--tracker {tracker} needs the Python package '{tracker}'" in err[0]
    assert not (tmp_path / "t").exists()  # refused before any stage ran


def test_a_negative_image_interval_is_refused(tmp_path, capsys):
    assert run_tiny(tmp_path, "--tracker", "tensorboard", "--tracker-images", "-1") == 2
    assert "--tracker-images must be >= 0" in capsys.readouterr().err


def test_no_tracker_by_default_writes_no_tracking_folder(tmp_path):
    assert run_tiny(tmp_path) == 0
    assert len(metrics(tmp_path)) == 4
    assert not (tmp_path / "t" / "tracking").exists()
