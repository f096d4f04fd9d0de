"""ADSA on any soft-label distilled-set file (UL-LT, LTDD/DATM learned labels, teacher-labelled
real images): `python -m ltdd.unilevel.adsa_file SET --out CALIBRATED [--tau-min/--tau-max]`.

The class prior π comes from the set's own metadata (`train_counts`, written by every ltdd
stage); τ* and the search range go into the output's metadata (`adsa_tau`, `adsa_search`).
Evaluate the result with `ltdd evaluate CALIBRATED`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ltdd.distilled import DistilledSet
from ltdd.errors import UserError
from ltdd.unilevel.adsa import calibrate_set


def calibrate_file(path: Path, out: Path, tau_min: float, tau_max: float, step: float) -> float:
    """Write the ADSA-calibrated copy of the set at `path` to `out`; returns τ*."""
    distilled = DistilledSet.load(path)
    if distilled.label_kind != "soft":
        raise UserError(f"{path}: has hard labels; ADSA calibrates soft (logit) labels")
    counts = distilled.meta.get("train_counts")
    if not counts or len(counts) != distilled.labels.shape[1]:
        raise UserError(
            f"{path}: metadata lacks train_counts for its {distilled.labels.shape[1]} classes"
        )
    if tau_min >= tau_max or step <= 0:
        raise UserError(f"need tau_min < tau_max and step > 0, got {tau_min}, {tau_max}, {step}")
    calibrated = calibrate_set(distilled, counts, tau_min=tau_min, tau_max=tau_max, step=step)
    calibrated.meta["adsa_search"] = {"tau_min": tau_min, "tau_max": tau_max, "step": step}
    calibrated.save(out)
    return calibrated.meta["adsa_tau"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltdd.unilevel.adsa_file", description=__doc__)
    parser.add_argument("set", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tau-min", type=float, default=-1.0)
    parser.add_argument("--tau-max", type=float, default=3.0)
    parser.add_argument("--step", type=float, default=0.05)
    args = parser.parse_args(argv)
    try:
        tau = calibrate_file(args.set, args.out, args.tau_min, args.tau_max, args.step)
    except UserError as exc:
        print(f"ltdd: error: {exc}", file=sys.stderr)
        return 2
    print(f"adsa: tau* = {tau:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
