"""Herding and k-center greedy selection, and the feature extractor they run on."""

import numpy as np
import pytest
import torch

from ltdd.errors import UserError
from ltdd.models import ParamLayout, create_model
from ltdd.select import extract_features, model_from_flat, select_herding, select_kcenter


def brute_herding(x: np.ndarray, budget: int) -> list[int]:
    """Try every remaining candidate; keep the one whose mean lands nearest the class mean."""
    mean, chosen = x.mean(axis=0), []
    for _ in range(budget):
        best, best_gap = None, np.inf
        for i in range(len(x)):
            if i in chosen:
                continue
            gap = np.linalg.norm(mean - x[chosen + [i]].mean(axis=0))
            if gap < best_gap:
                best, best_gap = i, gap
        chosen.append(best)
    return chosen


def brute_kcenter(x: np.ndarray, budget: int, first: int) -> list[int]:
    """Each step: the point whose nearest chosen center is farthest."""
    chosen = [first]
    while len(chosen) < budget:
        cover = [min(np.linalg.norm(x[i] - x[c]) for c in chosen) for i in range(len(x))]
        best = max((i for i in range(len(x)) if i not in chosen), key=lambda i: cover[i])
        chosen.append(best)
    return chosen


def gaussian_set(counts, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    perm = rng.permutation(len(labels))  # interleave classes so positions != class positions
    return rng.normal(size=(len(labels), dim)) + labels[perm, None], labels[perm]


def test_herding_on_a_line_by_hand():
    # mean 3.2; targets k*3.2 - S: 3.2 -> 3, 3.4 -> 2, 4.6 -> 1, 6.8 -> 10, then 0
    x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    labels = np.zeros(5, dtype=np.int64)
    assert select_herding(x, labels, 1, 5).tolist() == [3, 2, 1, 4, 0]
    assert select_herding(x, labels, 1, 1).tolist() == [3]


def test_kcenter_on_a_line_keeps_the_extremes():
    x = np.array([[-10.0], [-1.0], [0.0], [1.0], [10.0]])
    labels = np.zeros(5, dtype=np.int64)
    for seed in range(8):
        chosen = select_kcenter(x, labels, 1, 3, seed)
        first = np.random.default_rng(seed).integers(5)
        assert chosen[0] == first
        assert {0, 4} <= set(chosen.tolist())


@pytest.mark.parametrize("ipc", [1, 4, 7])
def test_herding_matches_brute_force(ipc):
    x, labels = gaussian_set([9, 7, 12])
    chosen = select_herding(x, labels, 3, ipc)
    expected = []
    for c in range(3):
        pool = np.flatnonzero(labels == c)
        expected += pool[brute_herding(x[pool], ipc)].tolist()
    assert chosen.tolist() == expected


@pytest.mark.parametrize("ipc", [1, 4, 7])
def test_kcenter_matches_brute_force(ipc):
    x, labels = gaussian_set([9, 7, 12], seed=1)
    chosen = select_kcenter(x, labels, 3, ipc, seed=5)
    rng, expected = np.random.default_rng(5), []
    for c in range(3):
        pool = np.flatnonzero(labels == c)
        expected += pool[brute_kcenter(x[pool], ipc, int(rng.integers(len(pool))))].tolist()
    assert chosen.tolist() == expected


def test_deterministic_counts_classes_in_order_and_tensor_input():
    x, labels = gaussian_set([20, 15, 10, 8])
    for select in (
        lambda f: select_herding(f, labels, 4, 5),
        lambda f: select_kcenter(f, labels, 4, 5, seed=3),
    ):
        chosen = select(x)
        assert chosen.dtype == np.int64
        assert labels[chosen].tolist() == sorted(labels[chosen].tolist())
        assert np.bincount(labels[chosen]).tolist() == [5, 5, 5, 5]
        assert len(set(chosen.tolist())) == 20  # no repeats
        assert np.array_equal(chosen, select(x))
        assert np.array_equal(chosen, select(torch.from_numpy(x).float()))


def test_kcenter_seed_changes_the_start():
    x, labels = gaussian_set([30])
    starts = {int(select_kcenter(x, labels, 1, 2, seed=s)[0]) for s in range(6)}
    assert len(starts) > 1


@pytest.mark.parametrize("name", ["herding", "kcenter"])
def test_tail_policies(name):
    x, labels = gaussian_set([6, 2])
    tail = np.flatnonzero(labels == 1)

    def select(policy, ipc=4):
        if name == "herding":
            return select_herding(x, labels, 2, ipc, tail_policy=policy)
        return select_kcenter(x, labels, 2, ipc, seed=0, tail_policy=policy)

    dup = select("duplicate")
    assert np.bincount(labels[dup]).tolist() == [4, 4]
    assert sorted(set(dup[4:].tolist())) == tail.tolist()
    assert dup[4:].tolist() == np.resize(dup[4:6], 4).tolist()
    everything = select("all")
    assert np.bincount(labels[everything]).tolist() == [4, 2]
    assert sorted(everything[4:].tolist()) == tail.tolist()
    with pytest.raises(UserError, match="class 1 has 2 real images, fewer than ipc=4"):
        select("error")
    assert select("error", ipc=2).tolist() == select("all", ipc=2).tolist()


def test_empty_class():
    x, labels = gaussian_set([5, 3])
    assert np.bincount(labels[select_herding(x, labels, 3, 2, "all")]).tolist() == [2, 2]
    with pytest.raises(UserError, match="class 2 has 0 real images"):
        select_kcenter(x, labels, 3, 2, seed=0)


@pytest.mark.parametrize("ipc", [0, -3])
def test_nonpositive_ipc_is_a_user_error(ipc):
    x, labels = gaussian_set([5])
    with pytest.raises(UserError, match="ipc must be a positive"):
        select_herding(x, labels, 1, ipc)
    with pytest.raises(UserError, match="ipc must be a positive"):
        select_kcenter(x, labels, 1, ipc, seed=0)


def test_features_and_labels_must_agree():
    x, labels = gaussian_set([5])
    with pytest.raises(ValueError, match="5 feature rows"):
        select_herding(x, labels[:4], 1, 2)


def test_extract_features_batches_and_restores_mode():
    model = create_model("convnet", 3, (1, 8, 8), width=4, depth=1, seed=0)
    images = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval().features(images)
    model.train()
    feats = extract_features(model, images, batch_size=3)
    assert model.training
    assert feats.shape == (7, 64)
    torch.testing.assert_close(feats, expected)
    with pytest.raises(UserError, match="batch_size"):
        extract_features(model, images, batch_size=0)


def test_model_from_flat_round_trip_and_wrong_length():
    source = create_model("convnet", 3, (1, 8, 8), width=4, depth=1, seed=1)
    flat = ParamLayout.from_module(source).flatten(source)
    rebuilt = model_from_flat("convnet", 3, (1, 8, 8), flat, width=4, depth=1)
    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(extract_features(rebuilt, images), extract_features(source, images))
    with pytest.raises(UserError, match="243 parameters; use the model and options"):
        model_from_flat("convnet", 3, (1, 8, 8), flat[:-1], width=4, depth=1)
