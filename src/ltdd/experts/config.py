"""`ExpertsConfig`: what kind of experts to train, how many, and the optimiser of each kind.

Every optimisation field left as None takes the value of the kind's preset (`PRESETS`); the
resolved config (`cfg.resolved()`, every value filled) is what is hashed and written beside the
trajectories. Presets follow reference-pipeline §4.3-4.4 (representation, classifier) and the
MTT / DATM buffer scripts (mtt, datm).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from ltdd.config import to_dict
from ltdd.errors import UserError
from ltdd.registry import Registry

KINDS = ("representation", "classifier", "mtt", "datm")
DTYPES = ("float32", "bfloat16", "float16")
SAMPLERS = ("uniform", "class_aware")

PRESETS: Registry[dict] = Registry("expert kind")

_GSAM = {"gsam": True, "rho": 0.01, "gsam_alpha": 0.3, "adaptive": True}
_COMMON = {
    "lr": 0.01,
    "momentum": 0.0,
    "batch_size": 256,
    "sampler": "uniform",
    "num_samples_cls": 4,
    "maxnorm": False,
    "maxnorm_thresh": 0.1,
}
PRESETS.register("representation")({**_COMMON, **_GSAM, "epochs": 100, "weight_decay": 5e-3})
PRESETS.register("classifier")(
    {**_COMMON, **_GSAM, "epochs": 10, "weight_decay": 0.0, "sampler": "class_aware"}
)
PRESETS.register("mtt")({**_COMMON, **_GSAM, "gsam": False, "epochs": 50, "weight_decay": 0.0})
PRESETS.register("datm")({**_COMMON, **_GSAM, "epochs": 100, "weight_decay": 0.0})


@dataclass(frozen=True)
class ExpertsConfig:
    """Expert training. `kind=classifier` retrains only the classifier of representation experts."""

    kind: str = field(default="representation", metadata={"choices": KINDS})
    num_experts: int = field(default=10, metadata={"ge": 1})
    vectorize: int = field(default=1, metadata={"ge": 1})
    model: str = "convnet"
    width: int | None = field(default=None, metadata={"ge": 1})
    depth: int | None = field(default=None, metadata={"ge": 1})
    norm: str | None = field(default=None, metadata={"choices": ("instance", "none")})
    seed: int = field(default=0, metadata={"ge": 0})
    epochs: int | None = field(default=None, metadata={"ge": 1})
    batch_size: int | None = field(default=None, metadata={"ge": 1})
    lr: float | None = field(default=None, metadata={"gt": 0})
    momentum: float | None = field(default=None, metadata={"ge": 0, "lt": 1})
    weight_decay: float | None = field(default=None, metadata={"ge": 0})
    gsam: bool | None = None
    rho: float | None = field(default=None, metadata={"ge": 0})
    gsam_alpha: float | None = None
    adaptive: bool | None = None
    sampler: str | None = field(default=None, metadata={"choices": SAMPLERS})
    num_samples_cls: int | None = field(default=None, metadata={"ge": 1})
    maxnorm: bool | None = None
    maxnorm_thresh: float | None = field(default=None, metadata={"ge": 0, "le": 1})
    dsa: bool = True
    save_epochs: list[int] | None = None
    dtype: str = field(default="float32", metadata={"choices": DTYPES})
    device: str = "auto"
    compile: bool = False
    """Classifier experts only: run the frozen backbone's forward through `torch.compile`
    (`ltdd.models.compiled`). A speed option, left out of every hash: the features agree with
    the eager ones to float rounding (about 1e-6 relative; tests/test_experts_compile.py). It
    costs one compilation per process (about 10 s of CPU cold, 2-3 s with inductor's on-disk
    cache warm) and saves 40-45 % of each step's backbone forward on a CPU."""

    def resolved(self) -> ExpertsConfig:
        """This config with every None filled from the kind's preset and `save_epochs` explicit."""
        preset = PRESETS.get(self.kind)
        fill = {name: value for name, value in preset.items() if getattr(self, name) is None}
        filled = dataclasses.replace(self, **fill)
        epochs = sorted(set(filled.save_epochs)) if filled.save_epochs is not None else None
        if epochs is None:
            epochs = list(range(filled.epochs + 1))
        bad = [e for e in epochs if not 0 <= e <= filled.epochs]
        if not epochs:
            raise UserError("save_epochs must list at least one epoch (or be null for all)")
        if bad:
            raise UserError(
                f"save_epochs must lie in 0..{filled.epochs} (the number of epochs), got {bad[0]}"
            )
        if filled.compile and not filled.trains_classifier_only:
            raise UserError(
                f"compile: true applies only to kind=classifier (the frozen backbone's forward), "
                f"got kind={filled.kind}; set compile: false"
            )
        return dataclasses.replace(filled, save_epochs=epochs)

    @property
    def trains_classifier_only(self) -> bool:
        """True for classifier experts: the backbone stays frozen, only `classifier.*` trains."""
        return self.kind == "classifier"


def model_overrides(cfg: ExpertsConfig) -> dict:
    """Keyword overrides for `create_model` (None values keep the model's defaults)."""
    return {"width": cfg.width, "depth": cfg.depth, "norm": cfg.norm}


def canonical_hash(obj: object) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of a JSON-ready object."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


SPEED_KEYS = ("compile",)
"""Keys that change how fast experts train, not what they are (results equal up to float
rounding): left out of the store's and the pipeline stage's hashes, recorded in the manifest."""


def stage_config(cfg: ExpertsConfig) -> dict:
    """The resolved config without `SPEED_KEYS`: what the pipeline's experts stage hashes."""
    values = to_dict(cfg.resolved())
    for key in SPEED_KEYS:
        values.pop(key)
    return values


def hashed_config(cfg: ExpertsConfig) -> dict:
    """The store's hashed config: `stage_config` without `device` (where it runs is not what it
    is)."""
    values = stage_config(cfg)
    values.pop("device")
    return values
