"""`RunConfig`: the YAML of `ltdd run` (data, experts, methods, evaluation) in one file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ltdd.data.dataset import DataConfig
from ltdd.distill.config import DistillConfig
from ltdd.evaluate.evaluate import EvalConfig
from ltdd.experts.config import ExpertsConfig
from ltdd.models import MODELS
from ltdd.select.policy import TAIL_POLICIES
from ltdd.unilevel.config import UnilevelConfig

BASELINES = ("random", "herding", "kcenter")
DISTILLERS = ("mtt", "datm", "ltdd")
UNILEVEL = ("unilevel",)


@dataclass(frozen=True)
class ExpertSections:
    """One section per expert kind; only the kinds the chosen methods read are trained."""

    representation: ExpertsConfig = field(default_factory=ExpertsConfig)
    classifier: ExpertsConfig = field(default_factory=lambda: ExpertsConfig(kind="classifier"))
    mtt: ExpertsConfig = field(default_factory=lambda: ExpertsConfig(kind="mtt"))
    datm: ExpertsConfig = field(default_factory=lambda: ExpertsConfig(kind="datm"))


@dataclass(frozen=True)
class DistillSections:
    """One section per distillation method (its `ipc` is the run's `ipc`)."""

    mtt: DistillConfig = field(default_factory=lambda: DistillConfig(method="mtt"))
    datm: DistillConfig = field(default_factory=lambda: DistillConfig(method="datm"))
    ltdd: DistillConfig = field(default_factory=lambda: DistillConfig(method="ltdd"))


@dataclass(frozen=True)
class BaselineConfig:
    """Real-image baselines: random, herding, k-center (on a representation expert's features)."""

    tail_policy: str = field(default="duplicate", metadata={"choices": TAIL_POLICIES})
    seed: int = field(default=0, metadata={"ge": 0})
    feature_expert: int = field(default=0, metadata={"ge": 0})


@dataclass(frozen=True)
class RunEvalConfig(EvalConfig):
    """Evaluation of every set, plus the full-data upper bound, DD-Ranking and other networks."""

    archs: tuple[str, ...] = ()
    full_data: bool = True
    full_epochs: int = field(default=30, metadata={"ge": 0})
    full_batch_size: int = field(default=256, metadata={"ge": 1})
    hard_label_lr: float = field(default=0.01, metadata={"gt": 0})
    ddranking: bool = True
    initial_sets: bool = True
    """Also evaluate every distillation's iteration-0 set (same protocol and seeds): the base of
    the distillation gain."""
    full_balanced: bool = False
    """Also train on the full long-tailed set with class-balanced re-sampling (every class
    repeated up to the largest class's count), a second upper bound (`full_balanced`)."""
    full_balanced_epochs: int = field(default=10, metadata={"ge": 0})


@dataclass(frozen=True)
class RunConfig:
    """Everything `ltdd run` does, in one run directory `runs_dir/name`."""

    name: str = "run"
    runs_dir: Path = Path("runs")
    device: str = "auto"
    jobs: int = field(default=1, metadata={"ge": 1})
    """Worker processes for the stages after the data (expert stores, sets, full-data bounds,
    evaluations), each with an equal share of the torch threads (`ltdd.pipeline.parallel`). A
    speed key, left out of every hash."""
    ipc: int = field(default=10, metadata={"ge": 1})
    methods: tuple[str, ...] = ("random", "herding", "kcenter", "mtt", "datm", "ltdd")
    share_experts: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    experts: ExpertSections = field(default_factory=ExpertSections)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    distill: DistillSections = field(default_factory=DistillSections)
    evaluate: RunEvalConfig = field(default_factory=RunEvalConfig)
    unilevel: UnilevelConfig = field(default_factory=UnilevelConfig)

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name


def check_run_config(cfg: RunConfig) -> None:
    """Cross-field checks the per-field constraints cannot express."""
    from ltdd.errors import UserError

    if cfg.name in ("", ".", "..") or "/" in cfg.name or "\\" in cfg.name:
        raise UserError(
            f"name must name one folder under runs_dir (no '/', not empty), got {cfg.name!r}"
        )
    known = BASELINES + DISTILLERS + UNILEVEL
    for method in cfg.methods:
        if method not in known:
            raise UserError(f"methods lists {method!r}; known: {', '.join(known)}")
    if not cfg.methods:
        raise UserError("methods must list at least one method")
    for arch in cfg.evaluate.archs:
        if arch not in MODELS:
            raise UserError(f"evaluate.archs lists {arch!r}; known: {', '.join(MODELS.names())}")
