"""Inner (student) losses of trajectory matching, as pure functions (reference-pipeline §5.6).

Soft labels are logits: the target distribution is `softmax(target_logits)` (temperature 1).
An inner loss is built by name from the real class prior, `INNER_LOSSES.get(name)(prior)`, so a
method names its loss and the engine never branches on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltdd.evaluate.trainer import soft_cross_entropy as soft_ce  # one soft CE everywhere
from ltdd.registry import Registry

InnerLoss = Callable[[Tensor, Tensor], Tensor]

INNER_LOSSES: Registry[Callable[[Tensor], InnerLoss]] = Registry("inner loss")
DAM_WEIGHTS = ("sum", "mean")
"""How DAM's class weights are normalised: `sum` to 1 (the official code), or `mean` to 1 (C
times larger, so the phase-1 inner gradient has the scale of a plain soft CE; reference §9 item
22). The relative weights, and so the direction of every gradient, are the same."""


def class_prior(counts: Sequence[int], normalise: str = "sum") -> Tensor:
    """DAM's weights w_c proportional to n_c (float64): summing to 1 (`sum`, the real long-tailed
    class prior n_c / sum(n), official) or with mean 1 (`mean`: C n_c / sum(n))."""
    if normalise not in DAM_WEIGHTS:
        raise ValueError(f"normalise must be one of {', '.join(DAM_WEIGHTS)}, got {normalise!r}")
    n = torch.as_tensor(list(counts), dtype=torch.float64)
    prior = n / n.sum()
    return prior * len(n) if normalise == "mean" else prior


def prior_weighted_soft_ce(logits: Tensor, target_logits: Tensor, weights: Tensor) -> Tensor:
    """DAM's loss: -(1/B) sum_b sum_c w_c q_{b,c} log softmax(logits)_{b,c}, q = softmax(target).

    The weight multiplies the class axis of the soft target, not the sample (reference §5.6).
    """
    q = F.softmax(target_logits, dim=1) * weights.to(logits)
    return -(q * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@INNER_LOSSES.register("ce")
def _ce(prior: Tensor) -> InnerLoss:
    """Cross-entropy against fixed integer class labels (MTT)."""
    return F.cross_entropy


@INNER_LOSSES.register("soft_ce")
def _soft_ce(prior: Tensor) -> InnerLoss:
    return soft_ce


@INNER_LOSSES.register("prior_weighted_soft_ce")
def _prior_weighted(prior: Tensor) -> InnerLoss:
    def loss(logits: Tensor, target_logits: Tensor) -> Tensor:
        return prior_weighted_soft_ce(logits, target_logits, prior)

    return loss


def inner_loss(name: str, counts: Sequence[int], dam_weights: str = "sum") -> InnerLoss:
    """The inner loss `name` for a training set with per-class counts `counts`; `dam_weights`
    normalises the class weights of the prior-weighted loss (`DAM_WEIGHTS`)."""
    return INNER_LOSSES.get(name)(class_prior(counts, dam_weights))
