"""`DistillConfig`: the YAML section of `ltdd distill` (names follow the reference's keys, §8).

The method (`mtt`, `datm`, `ltdd`) fixes the structure of an outer iteration; this config holds
the numbers. Phase i of the method reads section `phase{i}`: inner steps N, start-epoch range
[T-, T+) with the optional Sequential-Generation bound growing from T, and the weight lambda.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ltdd.data.augment import DSAConfig
from ltdd.distill.classnorm import IMAGE_GRAD_NORMS
from ltdd.distill.init import FILL_POLICIES
from ltdd.distill.losses import DAM_WEIGHTS
from ltdd.distill.matching import GRADIENT_MODES
from ltdd.distill.methods import IMAGE_INITS
from ltdd.errors import UserError


@dataclass(frozen=True)
class PhaseConfig:
    """One matching phase. `expansion_end_epoch` is counted in outer iterations (reference name)."""

    syn_steps: int = field(default=20, metadata={"ge": 1})
    min_start_epoch: int = field(default=0, metadata={"ge": 0})
    current_max_start_epoch: int = field(default=10, metadata={"ge": 0})
    max_start_epoch: int = field(default=20, metadata={"ge": 1})
    sequential_generation: bool = False
    expansion_end_epoch: int = field(default=2000, metadata={"ge": 1})
    weight: float = field(default=1.0, metadata={"ge": 0})
    lr_init: float | None = field(default=None, metadata={"gt": 0})
    """This phase's initial alpha with `lr_per_phase` (None: the config's `lr_init`)."""


def _classifier_phase() -> PhaseConfig:
    """LTDD's classifier phase: start at the classifier experts' epoch 0 (T_cls = 0/1/1)."""
    return PhaseConfig(
        syn_steps=80, min_start_epoch=0, current_max_start_epoch=1, max_start_epoch=1
    )


@dataclass(frozen=True)
class DistillConfig:
    """Trajectory-matching distillation (`ltdd distill`). Learning rates as the reference (§5.5).

    `gradient` and `image_init` left as None take the method's default. Three options depart
    from the official code when changed from their defaults (which are the official behaviour):
    - `dam_weights: mean` normalises DAM's class weights to mean 1 (official: sum 1);
    - `lr_per_phase: true` learns one alpha per phase, each from its phase's `lr_init` (official:
      one alpha shared by every phase); the set's evaluation learning rate is phase 1's alpha;
    - `lr_img_reference_ipc: K > 0` scales `lr_img` by IPC / K (official: `lr_img` as given);
    - `eval_lr_scale: s` stores s * alpha as the set's evaluation learning rate (official: 1, alpha
      itself). The student steps with plain SGD while the evaluation uses momentum mu = 0.9, whose
      steady-state step is lr / (1 - mu); s = 1 - mu = 0.1 gives the evaluation the student's step;
    - `image_grad_norm: class` rescales each class's block of the image gradient to the mean
      per-class norm before the image update (official: `none`), so classes whose DAM weight is
      small (the tail) move as far as the head.
    """

    method: str = "ltdd"
    gradient: str | None = field(default=None, metadata={"choices": tuple(GRADIENT_MODES.names())})
    image_init: str | None = field(default=None, metadata={"choices": IMAGE_INITS})
    ipc: int = field(default=10, metadata={"ge": 1})
    iterations: int = field(default=1000, metadata={"ge": 1})
    expert_epochs: int = field(default=2, metadata={"ge": 1})
    batch_syn: int = field(default=0, metadata={"ge": 0})
    lr_img: float = field(default=100.0, metadata={"gt": 0})
    lr_label: float = field(default=2.0, metadata={"gt": 0})
    lr_lr: float = field(default=1e-5, metadata={"ge": 0})
    lr_init: float = field(default=0.01, metadata={"gt": 0})
    lr_per_phase: bool = False
    lr_img_reference_ipc: int = field(default=0, metadata={"ge": 0})
    dam_weights: str = field(default="sum", metadata={"choices": DAM_WEIGHTS})
    eval_lr_scale: float = field(default=1.0, metadata={"gt": 0})
    image_grad_norm: str = field(default="none", metadata={"choices": IMAGE_GRAD_NORMS})
    fill: str = field(default="duplicate", metadata={"choices": tuple(FILL_POLICIES.names())})
    jitter: float = field(default=0.1, metadata={"ge": 0})
    threshold: float | None = field(default=None, metadata={"gt": 0})
    seed: int = field(default=0, metadata={"ge": 0})
    checkpoint_every: int = field(default=100, metadata={"ge": 1})
    eval_every: int = field(default=0, metadata={"ge": 0})
    eval_epochs: int = field(default=300, metadata={"ge": 0})
    model: str = "convnet"
    width: int | None = field(default=None, metadata={"ge": 1})
    depth: int | None = field(default=None, metadata={"ge": 1})
    norm: str | None = field(default=None, metadata={"choices": ("instance", "batch", "none")})
    dsa: DSAConfig = field(default_factory=DSAConfig)
    phase1: PhaseConfig = field(default_factory=PhaseConfig)
    phase2: PhaseConfig = field(default_factory=_classifier_phase)

    def model_overrides(self) -> dict:
        """Keyword overrides for `create_model` (None keeps the model's default)."""
        return {"width": self.width, "depth": self.depth, "norm": self.norm}

    @property
    def image_lr(self) -> float:
        """The images' learning rate: `lr_img`, times IPC / `lr_img_reference_ipc` when set."""
        if self.lr_img_reference_ipc:
            return self.lr_img * self.ipc / self.lr_img_reference_ipc
        return self.lr_img

    def phase(self, index: int) -> PhaseConfig:
        """The section of the method's phase `index` (0-based): `phase1`, `phase2`."""
        name = f"phase{index + 1}"
        if not hasattr(self, name):
            raise UserError(f"this config has no section {name} for the method's phase {index + 1}")
        return getattr(self, name)


def check_phase(name: str, phase: PhaseConfig, expert_epochs: int, epochs: list[int]) -> None:
    """Cross-field checks of one phase against the epochs its expert trajectories hold."""
    if phase.min_start_epoch >= phase.max_start_epoch:
        raise UserError(
            f"{name}.min_start_epoch must be < {name}.max_start_epoch, got "
            f"{phase.min_start_epoch} and {phase.max_start_epoch}"
        )
    available = set(epochs)
    needed = range(phase.min_start_epoch, phase.max_start_epoch)
    missing = sorted({e for s in needed for e in (s, s + expert_epochs) if e not in available})
    if missing:
        raise UserError(
            f"{name} needs expert epochs {phase.min_start_epoch}..."
            f"{phase.max_start_epoch - 1 + expert_epochs} (start epochs plus expert_epochs="
            f"{expert_epochs}), but the trajectories lack epoch {missing[0]}; lower "
            f"{name}.max_start_epoch or train and keep more expert epochs"
        )
