"""What a distillation did, read back from its `metrics.jsonl` and initialisation record.

Every distillation records, per outer iteration: the matching loss of each phase, alpha (per
phase), the per-class relative change of the images ||X_t - X_0|| / ||X_0||, and, every
`eval_every` iterations (and at iteration 0), the balanced accuracy on the validation split
carved from the training set. `summarize` condenses that into what a reader needs to judge
whether the optimisation moved the set at all.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: Path) -> list[dict]:
    """The records of a `metrics.jsonl` file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def normalised_phase_losses(rows: list[dict]) -> list[list[float]]:
    """Per phase, the unweighted matching loss of every iteration divided by its first value."""
    steps = [r["phase_matching_losses"] for r in rows if "phase_matching_losses" in r]
    if not steps:
        return []
    firsts = steps[0]
    return [
        [s[p] / firsts[p] if firsts[p] else float("nan") for s in steps] for p in range(len(firsts))
    ]


def summarize(rows: list[dict], init: dict | None = None) -> dict:
    """First/last normalised loss per phase, alpha per phase over iterations, the final per-class
    image change, the validation-accuracy curve and the initialisation record."""
    steps = [r for r in rows if "phase_matching_losses" in r]
    losses = normalised_phase_losses(rows)
    val = [
        (r["iteration"], r["val_balanced_accuracy"]) for r in rows if "val_balanced_accuracy" in r
    ]
    return {
        "iterations": steps[-1]["iteration"] if steps else 0,
        "phase_loss_last_over_first": [curve[-1] for curve in losses],
        "phase_loss_min_over_first": [min(curve) for curve in losses],
        "alpha": [[r["iteration"], r.get("phase_lr", [r.get("lr")])] for r in steps],
        "image_change_final": steps[-1].get("image_change") if steps else None,
        "validation": val,
        "init": init,
    }
