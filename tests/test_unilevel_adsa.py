"""ADSA (spec §3, check §6.6): identity at τ = 0, τ* ≈ 1 on g + log π for a balanced g."""

import torch

from ltdd.distilled import DistilledSet
from ltdd.unilevel.adsa import adjust, calibrate, calibrate_set, confidence_spread, log_prior


def _balanced_logits(per_class=400, classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(per_class)
    g = 2.5 * torch.nn.functional.one_hot(y, classes) + torch.randn(len(y), classes, generator=gen)
    return g, y


def test_tau_zero_is_the_identity():
    g, _ = _balanced_logits(10)
    torch.testing.assert_close(adjust(g, log_prior([5, 4, 3, 2, 1, 1, 1, 1, 1, 1]), 0.0), g)


def test_search_recovers_tau_one_on_prior_shifted_balanced_logits():
    g, y = _balanced_logits()
    counts = [int(5000 * 100 ** (-c / 9)) for c in range(10)]
    f = g + log_prior(counts)
    adjusted, tau = calibrate(f, y, counts)
    assert abs(tau - 1.0) < 0.05, tau
    assert confidence_spread(f, y, log_prior(counts), tau) < confidence_spread(
        f, y, log_prior(counts), 0.0
    )
    torch.testing.assert_close(adjusted, f - tau * log_prior(counts))
    _, tau_balanced = calibrate(g, y, counts)
    assert abs(tau_balanced) < 0.05  # already balanced labels are left (almost) alone


def test_calibrate_set_shifts_learned_label_logits_and_records_tau():
    g, y = _balanced_logits(20)
    counts = [1000, 500, 250, 120, 60, 30, 15, 8, 4, 2]
    s = DistilledSet(
        torch.zeros(len(y), 1, 4, 4), g + log_prior(counts), 0.01, {"method": "ltdd"}, y
    )
    out = calibrate_set(s, counts)
    assert out.meta["adsa_tau"] > 0.5 and out.meta["method"] == "ltdd"
    torch.testing.assert_close(out.labels, s.labels - out.meta["adsa_tau"] * log_prior(counts))


def test_adsa_file_calibrates_a_saved_learned_label_set_and_refuses_hard_labels(tmp_path, capsys):
    from ltdd.unilevel.adsa_file import main

    g, y = _balanced_logits(20)
    counts = [1000, 500, 250, 120, 60, 30, 15, 8, 4, 2]
    meta = {
        "dataset": "procedural", "imbalance_factor": 10, "ipc": 20, "method": "ltdd",
        "data": {}, "train_counts": counts,
    }  # fmt: skip
    DistilledSet(torch.zeros(len(y), 1, 4, 4), g + log_prior(counts), 0.01, meta, y).save(
        tmp_path / "set.safetensors"
    )
    assert (
        main([str(tmp_path / "set.safetensors"), "--out", str(tmp_path / "adsa.safetensors")]) == 0
    )
    out = DistilledSet.load(tmp_path / "adsa.safetensors")
    assert abs(out.meta["adsa_tau"] - 1.0) < 0.1 and out.meta["method"] == "ltdd"
    DistilledSet(torch.zeros(len(y), 1, 4, 4), y, 0.01, meta).save(tmp_path / "hard.safetensors")
    assert main([str(tmp_path / "hard.safetensors"), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("ltdd: error:")
    assert not (tmp_path / "x.safetensors").exists()


def test_hard_mix_makes_soft_cross_entropy_the_kappa_weighted_sum():
    import torch.nn.functional as F

    from ltdd.evaluate.trainer import soft_cross_entropy
    from ltdd.unilevel.relabel import mix_hard

    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(6, 4, generator=gen) * 3
    student = torch.randn(6, 4, generator=gen)
    classes = torch.tensor([0, 1, 2, 3, 1, 0])
    for kappa in (0.0, 0.3, 1.0):
        mixed = mix_hard(teacher, classes, kappa)
        expected = kappa * F.cross_entropy(student, classes) + (1 - kappa) * soft_cross_entropy(
            student, teacher
        )
        torch.testing.assert_close(soft_cross_entropy(student, mixed), expected)
    assert mix_hard(teacher, classes, 0.0) is teacher
    assert torch.isfinite(mix_hard(teacher * 100, classes, 0.5)).all()
