"""Optional experiment tracking: stream what `metrics.jsonl` holds to TensorBoard or wandb.

Nothing here is required. The default `none` does nothing; a backend's package is imported only
when it is chosen, and a missing one is a one-line UserError naming it. wandb always runs offline
(no network, no account): `wandb sync <dir>` uploads a run later if wanted.

Inside `with tracking(name, log_dir):` the distillation engine and the pipeline call
`log_iteration` (every finite number of each metrics record, lists flattened to `name/i`, plus
every `image_every` iterations a grid of the images with the preprocessing inverted, one row per
class) and `log_stage` (a stage's wall time, CPU time and peak memory). Outside it both are no-ops.
A new backend is one class registered in `TRACKERS`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ltdd.errors import UserError
from ltdd.registry import Registry
from ltdd.report.figures import mosaic

if TYPE_CHECKING:
    from ltdd.data.dataset import LongTailedData


class Tracker(Protocol):
    """A backend: scalars and pictures under a prefix (e.g. the method), then `close`."""

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None: ...

    def image(self, prefix: str, name: str, picture: np.ndarray, step: int) -> None: ...

    def close(self) -> None: ...


TRACKERS: Registry[Callable[[Path, dict], Tracker]] = Registry("tracker")
CHOICES = ("none", "tensorboard", "wandb")


def _require(tracker: str, module: str, package: str) -> ModuleType:
    """Import `module`, or fail with one line naming the pip package the tracker needs."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"--tracker {tracker} needs the Python package {package!r}, which is not installed "
            f"(pip install {package}); or use --tracker none"
        ) from None


@TRACKERS.register("tensorboard")
class TensorBoardTracker:
    """Event files under `<log_dir>/tensorboard` (view with `tensorboard --logdir <log_dir>`)."""

    def __init__(self, log_dir: Path, config: dict) -> None:
        module = _require("tensorboard", "torch.utils.tensorboard", "tensorboard")
        self.writer = module.SummaryWriter(log_dir=str(log_dir / "tensorboard"))
        if config:
            self.writer.add_text("config", f"```\n{_config_text(config)}\n```", 0)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def image(self, prefix: str, name: str, picture: np.ndarray, step: int) -> None:
        self.writer.add_image(f"{prefix}/{name}", picture, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


@TRACKERS.register("wandb")
class WandbTracker:
    """An offline wandb run under `<log_dir>/wandb`; each prefix has its own step axis."""

    def __init__(self, log_dir: Path, config: dict) -> None:
        self.wandb = _require("wandb", "wandb", "wandb")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(project="ltdd", dir=str(log_dir), mode="offline", config=config)
        self.prefixes: set[str] = set()

    def _log(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if prefix not in self.prefixes:  # several methods restart at step 1 in one run
            self.run.define_metric(f"{prefix}/step")
            self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
            self.prefixes.add(prefix)
        self.run.log({f"{prefix}/step": step, **{f"{prefix}/{k}": v for k, v in values.items()}})

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        self._log(prefix, values, step)

    def image(self, prefix: str, name: str, picture: np.ndarray, step: int) -> None:
        self._log(prefix, {name: self.wandb.Image(picture)}, step)

    def close(self) -> None:
        self.run.finish()


def _config_text(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class _Session:
    tracker: Tracker
    image_every: int
    stages: int = 0


_ACTIVE: ContextVar[_Session | None] = ContextVar("ltdd_tracker", default=None)


@contextmanager
def tracking(
    name: str, log_dir: str | Path, *, image_every: int = 50, config: dict | None = None
) -> Iterator[Tracker | None]:
    """Stream metrics to backend `name` (`none`: nothing) while the block runs.

    `image_every`: an image grid every this many iterations (0: never). `config` is recorded
    with the run.
    """
    if image_every < 0:
        raise UserError(f"--tracker-images must be >= 0 (0 = no images), got {image_every}")
    if name == "none":
        yield None
        return
    tracker = TRACKERS.get(name)(Path(log_dir), config or {})
    token = _ACTIVE.set(_Session(tracker, image_every))
    try:
        yield tracker
    finally:
        _ACTIVE.reset(token)
        tracker.close()


def numbers(record: dict, prefix: str = "") -> dict[str, float]:
    """Every finite number of a metrics record, nested lists/dicts flattened to `a/0`, `a/b`."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numbers(value, f"{name}/"))
        elif isinstance(value, (list, tuple)):
            out.update(numbers({str(i): v for i, v in enumerate(value)}, f"{name}/"))
        elif isinstance(value, (bool, int, float)) and math.isfinite(value):
            out[name] = float(value)
    return out


def log_iteration(prefix: str, record: dict, images: torch.Tensor, data: LongTailedData) -> None:
    """One metrics record (and, every `image_every` iterations, the image grid) to the tracker."""
    session = _ACTIVE.get()
    if session is None:
        return
    step = int(record["iteration"])
    values = numbers({k: v for k, v in record.items() if k != "iteration"})
    session.tracker.scalars(prefix, values, step)
    if session.image_every and step % session.image_every == 0:
        pictures = data.preprocessing.inverse_transform(images.detach().cpu())
        ipc = max(1, len(pictures) // data.num_classes)
        classes = torch.arange(len(pictures)) // ipc  # the engine keeps classes in blocks of IPC
        canvas = mosaic(pictures, classes, data.num_classes, ipc)
        session.tracker.image(prefix, "images", np.rint(canvas * 255).astype(np.uint8), step)


def log_stage(name: str, resources: dict) -> None:
    """A computed pipeline stage's cost (wall_s, cpu_s, peak_rss_mb, ...) to the tracker."""
    session = _ACTIVE.get()
    if session is None:
        return
    session.stages += 1
    session.tracker.scalars("stage", numbers(resources, f"{name}/"), session.stages)
