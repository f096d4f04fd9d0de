"""Real-image baselines: subsets of the long-tailed training set chosen per class."""

from ltdd.select.features import extract_features, model_from_flat, select_per_class
from ltdd.select.herding import select_herding
from ltdd.select.kcenter import select_kcenter
from ltdd.select.policy import TAIL_POLICIES, fill_class
from ltdd.select.random import select_random

__all__ = [
    "TAIL_POLICIES",
    "fill_class",
    "select_random",
    "extract_features",
    "model_from_flat",
    "select_per_class",
    "select_herding",
    "select_kcenter",
]
