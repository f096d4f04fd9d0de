"""Real-image baselines: subsets of the long-tailed training set chosen per class."""

from ltdd.select.policy import TAIL_POLICIES, fill_class
from ltdd.select.random import select_random

__all__ = ["TAIL_POLICIES", "fill_class", "select_random"]
