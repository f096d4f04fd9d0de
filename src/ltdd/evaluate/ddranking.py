"""DD-Ranking's label-robust metrics (Li et al., "DD-Ranking: Rethinking the Evaluation of Dataset
Distillation", arXiv:2505.13300), re-implemented from their definitions.

- HLR, hard label recovery = Acc(real, hard labels) - Acc(synthetic, hard labels); lower is better.
- IOR, improvement over random = Acc(synthetic, its own labels and recipe) - Acc(random real subset,
  same recipe); higher is better.
- LRS, label-robust score = (e^a - e^-1) / (e - e^-1) with a = lam * IOR - (1 - lam) * HLR.

Units: accuracies, HLR and IOR are FRACTIONS in [0, 1] here (our evaluation reports accuracy as a
fraction), so a lies in [-1, 1] and LRS in [0, 1] as DD-Ranking documents. Its code feeds
percentage points into the exponential, which puts LRS outside [0, 1]; multiply HLR and IOR by 100
to report them in points.

For long-tailed data the "real" reference of HLR is the full long-tailed training set (hard labels,
cross-entropy), not a balanced one. The random subset of IOR has min(ipc, n_c) images of class c,
redrawn per seed: `ltdd.select.select_random(labels, num_classes, ipc, seed, tail_policy="all")`.

As in DD-Ranking, each metric is computed per seed (runs paired by position) and summarised by the
mean and population standard deviation of the per-seed values; the LRS reported is the mean of the
per-seed LRS, not the LRS of the mean HLR and IOR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ltdd.evaluate.evaluate import summarize


def hard_label_recovery(acc_real_hard: float, acc_syn_hard: float) -> float:
    """HLR = accuracy trained on the real set - accuracy trained on the synthetic set (hard)."""
    return acc_real_hard - acc_syn_hard


def improvement_over_random(acc_syn: float, acc_random: float) -> float:
    """IOR = accuracy of the synthetic set - accuracy of a same-size random real subset."""
    return acc_syn - acc_random


def label_robust_score(hlr: float, ior: float, lam: float = 0.5) -> float:
    """LRS = (e^a - e^-1) / (e - e^-1), a = lam * IOR - (1 - lam) * HLR (both as fractions)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    alpha = lam * ior - (1.0 - lam) * hlr
    return (math.exp(alpha) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def ddranking_summary(
    real_hard_runs: Sequence[float],
    syn_hard_runs: Sequence[float],
    syn_own_runs: Sequence[float],
    random_own_runs: Sequence[float],
    lam: float = 0.5,
) -> dict:
    """Per-seed HLR, IOR and LRS from four equally long lists of accuracies (fractions).

    Run i of every list belongs to seed i. Returns {"hlr", "ior", "lrs"}, each {mean, std, runs}
    with the population standard deviation (ddof 0).
    """
    runs = {
        "real_hard_runs": real_hard_runs,
        "syn_hard_runs": syn_hard_runs,
        "syn_own_runs": syn_own_runs,
        "random_own_runs": random_own_runs,
    }
    lengths = {name: len(values) for name, values in runs.items()}
    if len(set(lengths.values())) != 1 or not real_hard_runs:
        raise ValueError(f"need the same positive number of runs (one per seed) in each: {lengths}")
    hlr = [hard_label_recovery(r, s) for r, s in zip(real_hard_runs, syn_hard_runs, strict=True)]
    ior = [
        improvement_over_random(s, r) for s, r in zip(syn_own_runs, random_own_runs, strict=True)
    ]
    lrs = [label_robust_score(h, i, lam) for h, i in zip(hlr, ior, strict=True)]
    return {"hlr": summarize(hlr), "ior": summarize(ior), "lrs": summarize(lrs)}
