"""Synthetic-set initialisation: correct-expert image selection, fill policies, soft labels
(reference §5.3-5.4, §10 check 9)."""

from __future__ import annotations

import pytest
import torch

from ltdd.distill.init import FILL_POLICIES, average_correct_logits, init_images
from ltdd.errors import UserError


def real_set(counts):
    """Image i of class c is constant with value 100 * c + i, so identities are readable."""
    labels = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    values = torch.cat([100.0 * c + torch.arange(n) for c, n in enumerate(counts)])
    return values.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone(), labels


def ids(block):
    return block[:, 0, 0, 0].tolist()


def test_random_real_uses_distinct_images_of_the_class():
    images, labels = real_set([9, 5, 3])
    x, classes, record = init_images(images, labels, 3, 3, "duplicate", torch.Generator())
    assert classes.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for c in range(3):
        got = ids(x[3 * c : 3 * c + 3])
        assert len(set(got)) == 3 and all(100 * c <= v < 100 * c + 100 for v in got)
    assert record["real_per_class"] == [3, 3, 3] and record["filled_per_class"] == [0, 0, 0]


def test_duplicate_fills_cyclically():
    images, labels = real_set([6, 2])
    x, _, record = init_images(images, labels, 2, 5, "duplicate", torch.Generator())
    tail = ids(x[5:])
    assert tail[:2] == tail[2:4] and tail[4] == tail[0] and set(tail) == {100.0, 101.0}
    assert record["real_per_class"] == [5, 2] and record["filled_per_class"] == [0, 3]
    assert record["fill_policy"] == "duplicate"


def test_duplicate_jitter_keeps_originals_and_perturbs_copies():
    images, labels = real_set([6, 2])
    x, _, record = init_images(
        images, labels, 2, 5, "duplicate_jitter", torch.Generator(), jitter=0.01
    )
    tail = x[5:]
    assert ids(tail[:2]) in ([100.0, 101.0], [101.0, 100.0])
    copies = tail[2:] - tail[torch.tensor([0, 1, 0])]
    assert (copies != 0).all() and copies.abs().max() < 0.1
    assert record["jitter"] == 0.01


def test_noise_policy_keeps_found_once_and_adds_noise():
    images, labels = real_set([6, 2])
    x, _, _ = init_images(images, labels, 2, 5, "noise", torch.Generator())
    tail = ids(x[5:])
    assert sorted(tail[:2]) == [100.0, 101.0]
    assert all(abs(v) < 10 for v in tail[2:])  # N(0, 1), far from the real values 100, 101


def test_correct_selection_only_keeps_correctly_predicted_images():
    images, labels = real_set([8, 6, 4])

    def predict(x):  # the expert is right only on even-valued images; never on class 2
        v = x[:, 0, 0, 0]
        cls = torch.div(v, 100, rounding_mode="floor").long()
        wrong = (v % 2 == 1) | (cls == 2)
        return torch.where(wrong, (cls + 1) % 3, cls)

    x, _, record = init_images(images, labels, 3, 3, "duplicate", torch.Generator(), predict)
    assert all(v % 2 == 0 for v in ids(x[:6]))
    assert len(set(ids(x[:3]))) == 3 and len(set(ids(x[3:6]))) == 3
    assert record["selection"] == "correct_real"
    assert record["real_per_class"] == [3, 3, 0] and record["noise_classes"] == [2]
    assert all(abs(v) < 10 for v in ids(x[6:]))


def test_unknown_fill_policy_is_a_user_error():
    images, labels = real_set([2])
    with pytest.raises(UserError, match="unknown fill policy 'copy'; known: duplicate"):
        init_images(images, labels, 1, 1, "copy", torch.Generator())
    assert set(FILL_POLICIES.names()) == {"duplicate", "duplicate_jitter", "noise"}


def test_soft_labels_average_only_correct_experts():
    classes = torch.tensor([0, 1, 2])
    e1 = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [5.0, 0.0, 1.0]])  # right on 0, 1
    e2 = torch.tensor([[1.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 9.0, 2.0]])  # right on 0
    e3 = torch.tensor([[0.0, 7.0, 0.0], [1.0, 6.0, 2.0], [3.0, 3.0, 0.0]])  # right on 1
    out = average_correct_logits([e1, e2, e3], classes)
    assert torch.equal(out[0], (e1[0] + e2[0]) / 2)
    assert torch.equal(out[1], (e1[1] + e3[1]) / 2)
    assert torch.equal(out[2], torch.zeros(3)), "no correct expert: zero logits (uniform)"
