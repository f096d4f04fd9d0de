"""Trajectory-matching distillation: one engine, methods as configurations (mtt, datm, ltdd)."""

from ltdd.distill.config import DistillConfig, PhaseConfig
from ltdd.distill.engine import TrajectorySource, distill
from ltdd.distill.methods import METHODS, Method, Phase

__all__ = [
    "METHODS",
    "DistillConfig",
    "Method",
    "Phase",
    "PhaseConfig",
    "TrajectorySource",
    "distill",
]
