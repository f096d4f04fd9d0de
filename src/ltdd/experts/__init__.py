"""Expert trajectories: representation, classifier, MTT and DATM experts and their store."""

from ltdd.experts.config import PRESETS, ExpertsConfig
from ltdd.experts.estimate import estimate
from ltdd.experts.run import train_experts
from ltdd.experts.store import TrajectoryStore
from ltdd.experts.summary import summary_table

__all__ = [
    "PRESETS",
    "ExpertsConfig",
    "TrajectoryStore",
    "estimate",
    "summary_table",
    "train_experts",
]
