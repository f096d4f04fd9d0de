"""DD-Ranking metrics against the reference table (dd-ranking.md §2) and hand-computed runs."""

import math

import pytest

from ltdd.evaluate.ddranking import (
    ddranking_summary,
    hard_label_recovery,
    improvement_over_random,
    label_robust_score,
)


@pytest.mark.parametrize(
    ("hlr", "ior", "lrs"),
    [
        (0.0, 0.0, 0.268941),
        (0.2, 0.1, 0.248192),
        (0.1, 0.3, 0.313687),
        (1.0, 0.0, 0.101536),
        (0.0, 1.0, 0.544946),
    ],
)
def test_lrs_reference_values(hlr, ior, lrs):
    assert label_robust_score(hlr, ior) == pytest.approx(lrs, abs=5e-7)


def test_lrs_bounds_and_lambda():
    assert label_robust_score(0.0, 1.0, lam=1.0) == pytest.approx(1.0, abs=1e-15)
    assert label_robust_score(1.0, 0.0, lam=0.0) == pytest.approx(0.0, abs=1e-15)
    # lam = 0.25: alpha = 0.25 * 0.4 - 0.75 * 0.2 = -0.05, the same alpha as (0.2, 0.1) at 0.5
    assert label_robust_score(0.2, 0.4, lam=0.25) == pytest.approx(0.248192, abs=5e-7)
    with pytest.raises(ValueError, match="lam"):
        label_robust_score(0.1, 0.1, lam=1.5)


def test_differences():
    assert hard_label_recovery(0.8, 0.55) == pytest.approx(0.25)
    assert improvement_over_random(0.55, 0.6) == pytest.approx(-0.05)


def test_summary_per_seed_by_hand():
    # seed 0: hlr 0.2, ior 0.1 ; seed 1: hlr 0.4, ior 0.5
    out = ddranking_summary([0.8, 0.8], [0.6, 0.4], [0.6, 0.7], [0.5, 0.2])
    assert out["hlr"]["runs"] == pytest.approx([0.2, 0.4])
    assert out["hlr"]["mean"] == pytest.approx(0.3)
    assert out["hlr"]["std"] == pytest.approx(0.1)  # population std
    assert out["ior"]["runs"] == pytest.approx([0.1, 0.5])
    assert out["ior"]["mean"] == pytest.approx(0.3)
    assert out["ior"]["std"] == pytest.approx(0.2)
    alphas = [0.5 * 0.1 - 0.5 * 0.2, 0.5 * 0.5 - 0.5 * 0.4]
    lrs = [(math.exp(a) - math.exp(-1)) / (math.e - math.exp(-1)) for a in alphas]
    assert out["lrs"]["runs"] == pytest.approx(lrs)
    assert out["lrs"]["mean"] == pytest.approx(sum(lrs) / 2)
    assert out["lrs"]["std"] == pytest.approx(abs(lrs[0] - lrs[1]) / 2)
    # mean of the per-seed LRS, not the LRS of the mean HLR and IOR
    assert out["lrs"]["mean"] != pytest.approx(label_robust_score(0.3, 0.3), abs=1e-6)


def test_summary_single_seed_and_lambda():
    out = ddranking_summary([0.9], [0.7], [0.75], [0.45], lam=0.25)
    assert out["lrs"]["runs"] == pytest.approx([label_robust_score(0.2, 0.3, lam=0.25)])
    assert out["lrs"]["std"] == 0.0


@pytest.mark.parametrize(
    "runs",
    [
        ([0.8, 0.8], [0.6], [0.6, 0.5], [0.5, 0.2]),
        ([0.8], [0.6], [0.6], [0.5, 0.2]),
        ([], [], [], []),
    ],
)
def test_summary_rejects_unpaired_runs(runs):
    with pytest.raises(ValueError, match="same positive number of runs"):
        ddranking_summary(*runs)
