"""Distillation methods: each is a small frozen dataclass filling the engine's named slots.

A method says which phases an outer iteration runs (expert kind, inner loss, matched
coordinates S, updated coordinates U), what the labels are, how the synthetic set starts, and
the default gradient mode. The numbers of each phase (inner steps, start epochs, weight lambda)
come from the config sections `phase1`, `phase2`, ... in phase order.

A new method is one new registered dataclass here (or in a plugin module); the engine, CLI and
tests need no edit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ltdd.registry import Registry

PARAM_GROUPS = ("all", "backbone", "classifier")
UPDATE_GROUPS = ("all", "classifier")
LABEL_KINDS = ("hard", "soft")
IMAGE_INITS = ("random_real", "correct_real", "herding")
"""`herding`: herding on the penultimate features of the first phase's expert 0 at its last kept
epoch (the `herding` baseline's selection; an option, the official code has no such init)."""


def _check(slot: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"method slot {slot} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class Phase:
    """One matching phase.

    experts: key of the expert trajectories it matches ("mtt", "datm", "representation", ...).
    inner_loss: name in `INNER_LOSSES` ("ce", "soft_ce", "prior_weighted_soft_ce").
    match: the coordinates S compared with the expert ("all", "backbone", "classifier").
    update: the coordinates U the student updates ("all", or "classifier" with a frozen backbone).
    """

    experts: str
    inner_loss: str
    match: str = "all"
    update: str = "all"

    def __post_init__(self) -> None:
        _check("match", self.match, PARAM_GROUPS)
        _check("update", self.update, UPDATE_GROUPS)


@dataclass(frozen=True)
class Method:
    """The engine's slots. `init_experts` names the experts that select images and label them."""

    phases: tuple[Phase, ...]
    label_kind: str = "soft"
    image_init: str = "correct_real"
    init_experts: str = ""
    gradient: str = "tesla"

    def __post_init__(self) -> None:
        _check("label_kind", self.label_kind, LABEL_KINDS)
        _check("image_init", self.image_init, IMAGE_INITS)
        needs_experts = self.label_kind == "soft" or self.image_init == "correct_real"
        if needs_experts and not self.init_experts:
            raise ValueError("soft labels and correct_real images need init_experts")
        if not self.phases:
            raise ValueError("a method needs at least one phase")

    @property
    def expert_kinds(self) -> list[str]:
        """Every expert kind the method reads, in first-use order."""
        kinds = [p.experts for p in self.phases]
        if self.init_experts:
            kinds.append(self.init_experts)
        return list(dict.fromkeys(kinds))


METHODS: Registry[type[Method]] = Registry("method")


@METHODS.register("mtt")
@dataclass(frozen=True)
class MTT(Method):
    """MTT: hard labels, random real images, plain experts, exact unrolled gradients."""

    phases: tuple[Phase, ...] = (Phase(experts="mtt", inner_loss="ce"),)
    label_kind: str = "hard"
    image_init: str = "random_real"
    init_experts: str = ""
    gradient: str = "unrolled"


@METHODS.register("datm")
@dataclass(frozen=True)
class DATM(Method):
    """DATM: learnable soft labels initialised from the experts that classify each image correctly.

    The growing start-epoch bound (Sequential Generation) and the loss-threshold gate are config
    keys (`phase1.sequential_generation`, `threshold`) that the DATM profiles switch on.
    """

    phases: tuple[Phase, ...] = (Phase(experts="datm", inner_loss="soft_ce"),)
    init_experts: str = "datm"


@METHODS.register("ltdd")
@dataclass(frozen=True)
class LTDD(Method):
    """LTDD (DAMED): Distribution-agnostic Matching, then Expert Decoupling.

    Phase 1 (DAM): prior-weighted soft CE, backbone matched, whole student updated, against
    representation experts. Phase 2 (ED): plain soft CE, only the classifier updated and matched,
    against classifier experts. Images are real images a classifier expert classifies correctly;
    soft labels average the classifier experts that are correct.
    """

    phases: tuple[Phase, ...] = (
        Phase(
            experts="representation",
            inner_loss="prior_weighted_soft_ce",
            match="backbone",
            update="all",
        ),
        Phase(experts="classifier", inner_loss="soft_ce", match="classifier", update="classifier"),
    )
    init_experts: str = "classifier"
