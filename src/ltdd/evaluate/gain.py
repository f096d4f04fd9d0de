"""Distillation gain: what the optimisation added over the set it started from.

The final set and its own iteration-0 set are evaluated with the same protocol and the same
evaluation seeds; the gain is the per-seed paired difference of balanced accuracy, in points.
"""

from __future__ import annotations

import numpy as np


def distillation_gain(final_runs: list[float], initial_runs: list[float]) -> dict:
    """Mean and population std (ddof 0) of final - initial per seed, in points (accuracies are
    fractions in [0, 1]), with the per-seed differences. Seeds must pair up one to one."""
    if len(final_runs) != len(initial_runs) or not final_runs:
        raise ValueError(
            f"need the same non-zero number of runs, got {len(final_runs)} and {len(initial_runs)}"
        )
    diff = 100.0 * (np.asarray(final_runs, float) - np.asarray(initial_runs, float))
    return {"mean": float(diff.mean()), "std": float(diff.std()), "runs": diff.tolist()}
