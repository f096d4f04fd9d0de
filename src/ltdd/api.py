"""The Python API: thin functions over the stages the `ltdd` command runs.

Re-exported by `ltdd/__init__.py`, whose `__all__` is the one list of the public names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from ltdd.commands import eval_train_config, load_set_and_data
from ltdd.config import from_dict, load_config, merge, parse_overrides, to_dict
from ltdd.data.dataset import DataConfig, LongTailedData, prepare_data
from ltdd.device import resolve_device
from ltdd.distilled import DistilledSet
from ltdd.errors import UserError
from ltdd.evaluate.evaluate import EvalConfig, evaluate_set
from ltdd.export import export_set
from ltdd.io import read_json
from ltdd.models import MODELS
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import SET_FILE, run_pipeline
from ltdd.tracking import tracking

Space = Literal["model", "pixels"]
LabelForm = Literal["stored", "hard", "probs"]


class DistilledDataset(Dataset):
    """A distilled set as a map-style dataset of `(image, target)` pairs.

    Attributes: `images` (N, C, H, W), `targets` (N int64 class ids or N×K floats), `classes`
    (the class of each image), `lr` (the learned learning rate), `class_names`, `label_kind`
    (`hard` or `soft`, as stored), `space` (`model`: the model's input space; `pixels`: the
    preprocessing inverted, values in [0, 1]), `meta` (the file's metadata) and `path`.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        distilled: DistilledSet,
        class_names: list[str],
        space: Space,
        path: Path,
    ) -> None:
        self.images = images
        self.targets = targets
        self.classes = distilled.class_ids
        self.lr = distilled.lr
        self.label_kind = distilled.label_kind
        self.class_names = class_names
        self.space = space
        self.meta = distilled.meta
        self.path = path

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]


def _targets(distilled: DistilledSet, form: LabelForm, num_classes: int) -> torch.Tensor:
    if form == "stored":
        return distilled.labels
    if form == "hard":
        return distilled.class_ids
    if form == "probs":
        if distilled.label_kind == "soft":
            return distilled.labels.softmax(dim=1)
        return nn.functional.one_hot(distilled.labels, num_classes).float()
    raise UserError(f"labels must be 'stored', 'hard' or 'probs', got {form!r}")


def load_distilled(
    path: str | Path,
    *,
    space: Space = "model",
    labels: LabelForm = "stored",
    root: str | Path | None = None,
) -> DistilledDataset:
    """Load a distilled-set file as a `torch.utils.data.Dataset`.

    space: `model` gives the images as stored (what the network trains on); `pixels` inverts the
    preprocessing (ZCA, normalisation) to pictures in [0, 1], as `ltdd show` does; that rebuilds
    the dataset the set was made from (`root` if it moved).
    labels: `stored` (class ids, or soft-label logits), `hard` (class ids), `probs` (softmax of
    the logits; one-hot for a hard-label set).
    """
    path = Path(path)
    if space == "model":
        distilled = DistilledSet.load(path)
        num_classes = int(distilled.meta.get("num_classes") or int(distilled.class_ids.max()) + 1)
        names = distilled.meta.get("class_names") or [str(c) for c in range(num_classes)]
        images = distilled.images
    elif space == "pixels":
        distilled, data = load_set_and_data(path, None if root is None else Path(root))
        names = list(data.class_names)
        images = data.preprocessing.inverse_transform(distilled.images)
    else:
        raise UserError(f"space must be 'model' or 'pixels', got {space!r}")
    targets = _targets(distilled, labels, len(names))
    return DistilledDataset(images, targets, distilled, list(names), space, path)


def longtail_split(
    dataset: str = "fashion-mnist",
    imbalance_factor: float = 100.0,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    **options: Any,
) -> LongTailedData:
    """The long-tailed benchmark of `dataset`: n_c = floor(n_max · β^(−c/(C−1))), head = class 0.

    Returns preprocessed tensors (`train_images`, `train_labels`, `test_images`, ... in the
    model's input space), `train_counts`, `class_names`, the fitted `preprocessing` and `info`
    (counts and `index_sha256`, the fingerprint of the selection). `options` are further keys of
    the config's `data` section (`test_profile`, `normalize`, `zca`, `zca_eps`, `val_per_class`,
    `val_from`).
    """
    values = {"dataset": dataset, "imbalance_factor": imbalance_factor, "seed": seed, **options}
    if root is not None:
        values["root"] = str(root)
    return prepare_data(from_dict(DataConfig, values))


@dataclass(frozen=True)
class RunResult:
    """What `run` produced: the run directory, the report, the sets and their evaluations."""

    run_dir: Path
    report: Path
    sets: dict[str, Path]
    results: dict[str, dict]

    def accuracy(self, method: str, profile: str = "balanced") -> dict:
        """`{mean, std, runs}` test accuracy (fractions) of `method` on a test profile."""
        return self.results[method][profile.replace("-", "_")]["accuracy"]


def run(
    config: Mapping[str, Any] | str | Path,
    overrides: Sequence[str] = (),
    *,
    progress: bool = False,
    tracker: str = "none",
    tracker_images: int = 50,
) -> RunResult:
    """Run (or finish) the pipeline of a run config, as `ltdd run` does.

    config: a YAML path or a dict with the same keys; `overrides` are dotted `key=value` strings.
    Stages whose configuration is unchanged are reused from the run directory
    (`runs_dir/name`). `tracker` streams metrics to `tensorboard` or `wandb` (offline).
    """
    if isinstance(config, Mapping):
        cfg = from_dict(RunConfig, merge(dict(config), parse_overrides(list(overrides))))
    else:
        cfg = load_config(RunConfig, config, list(overrides))
    log_dir = cfg.run_dir / "tracking"
    with tracking(tracker, log_dir, image_every=tracker_images, config=to_dict(cfg)):
        report = run_pipeline(cfg, progress=progress)
    run_dir = cfg.run_dir
    sets = {m: run_dir / "distill" / m / SET_FILE for m in cfg.methods}
    files = sorted((run_dir / "eval").glob("*.json"))  # <tag>.json beside <tag>.stage.json
    results = {p.stem: read_json(p) for p in files if not p.name.endswith(".stage.json")}
    return RunResult(run_dir=run_dir, report=report, sets=sets, results=results)


ModelFactory = Callable[[int, tuple[int, int, int]], nn.Module]


@contextmanager
def _model_name(model: str | ModelFactory | None) -> Iterator[str | None]:
    """A registered model name for `model`; a factory is registered only while evaluating."""
    if model is None or isinstance(model, str):
        yield model
        return
    name = f"<factory {getattr(model, '__qualname__', 'model')} {id(model):x}>"
    MODELS.register(name)(model)
    try:
        yield name
    finally:
        MODELS.unregister(name)


def evaluate_distilled(
    distilled: str | Path | DistilledDataset,
    *,
    model: str | ModelFactory | None = None,
    epochs: int = 1000,
    seeds: int = 3,
    first_seed: int = 0,
    test_profile: str = "both",
    width: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    root: str | Path | None = None,
    device: str = "auto",
    progress: bool = False,
) -> dict:
    """Train `seeds` fresh networks on a set with the project's protocol and test them.

    The protocol is `ltdd evaluate`'s (SGD momentum 0.9, weight decay 5e-4, the set's lr, ÷10
    after half the epochs, DSA). model: a registered name, or a factory
    `(num_classes, (C, H, W)) -> nn.Module` of your own (seeded per evaluation seed); default:
    the network the set was made for. device: auto, cpu, cuda or cuda:<i>. Returns, per test
    profile (`balanced`, `long_tailed`), `accuracy` {mean, std, runs}, per-class accuracy, macro
    precision/recall/F1 and head/medium/tail accuracy, plus the `settings` used.
    """
    path = distilled.path if isinstance(distilled, DistilledDataset) else Path(distilled)
    if epochs < 0 or seeds < 1 or (lr is not None and not lr > 0):
        raise UserError(f"need epochs >= 0, seeds >= 1, lr > 0; got {epochs}, {seeds}, {lr}")
    stored, data = load_set_and_data(path, None if root is None else Path(root))
    with _model_name(model) as arch:
        train = eval_train_config(stored.meta, arch, width, epochs, batch_size)
        cfg = from_dict(
            EvalConfig,
            {"seeds": seeds, "first_seed": first_seed, "test_profile": test_profile},
        )
        cfg = dataclasses.replace(cfg, train=train)
        result = evaluate_set(
            stored.images,
            stored.labels,
            stored.lr if lr is None else lr,
            data,
            cfg,
            resolve_device(device),
            progress=progress,
        )
    if not isinstance(model, (str, type(None))):
        result["settings"]["train"]["model"] = "user factory"
    result["file"] = str(path)
    return result


def export_distilled(
    distilled: str | Path | DistilledDataset,
    out: str | Path,
    format: str = "folder",
    *,
    root: str | Path | None = None,
) -> Path:
    """Write a set as `folder` (class-per-folder PNGs + labels.json/.csv), `npz` or `pt`
    (see `ltdd export --help`); `out` must not exist or be empty. Returns `out`."""
    path = distilled.path if isinstance(distilled, DistilledDataset) else Path(distilled)
    return export_set(path, out, format, root)
