"""Start-epoch bound (Sequential Generation), inner-step batches and expert cursors (§5.2, §5.7)."""

from __future__ import annotations

from collections import Counter

import torch

from ltdd.distill.schedule import (
    ExpertCursor,
    inner_batches,
    sample_start_epoch,
    start_epoch_bound,
)


def test_bound_grows_from_t_to_t_plus_over_e_iterations():
    bounds = [start_epoch_bound(it, 0, 10, 20, 1000, True) for it in range(0, 1500, 50)]
    assert bounds[0] == 10 and bounds[-1] == 20
    assert all(a <= b for a, b in zip(bounds, bounds[1:], strict=False))
    assert start_epoch_bound(500, 0, 10, 20, 1000, True) == 15  # 10 + floor(10 * 500 / 1000)
    assert start_epoch_bound(0, 0, 10, 20, 1000, False) == 20


def test_bound_is_never_empty():
    """The reference's crash: Sequential Generation with T_cls = 0/0/1 gives randint(0, 0)."""
    g = torch.Generator().manual_seed(0)
    for it in range(0, 3000, 7):
        for low, cur, high in [(0, 0, 1), (5, 0, 20), (3, 3, 4)]:
            bound = start_epoch_bound(it, low, cur, high, 1000, True)
            assert bound > low
            assert low <= sample_start_epoch(low, bound, g) < bound


def test_start_epochs_cover_the_range_uniformly():
    g = torch.Generator().manual_seed(1)
    counts = Counter(sample_start_epoch(2, 6, g) for _ in range(4000))
    assert set(counts) == {2, 3, 4, 5}
    assert all(800 < n < 1200 for n in counts.values())


def test_inner_batches_pop_the_last_chunk_and_refill():
    g, ref = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    batches = inner_batches(10, 4, 5, g)
    first, second = torch.randperm(10, generator=ref), torch.randperm(10, generator=ref)
    expected = [first[8:], first[4:8], first[:4], second[8:], second[4:8]]
    assert [b.tolist() for b in batches] == [e.tolist() for e in expected]
    whole = inner_batches(6, 6, 3, torch.Generator().manual_seed(3))
    assert all(sorted(b.tolist()) == list(range(6)) for b in whole)


def test_experts_drawn_without_replacement_per_pass():
    g = torch.Generator().manual_seed(4)
    cursor = ExpertCursor.fresh(5)
    draws = [cursor.next(g) for _ in range(15)]
    for k in range(3):
        assert sorted(draws[5 * k : 5 * k + 5]) == list(range(5))
    assert draws[:5] != draws[5:10] or draws[5:10] != draws[10:]
    restored = ExpertCursor.fresh(5)
    restored.load(cursor.state())
    g2 = torch.Generator().manual_seed(0)
    g2.set_state(g.get_state())
    assert [restored.next(g2) for _ in range(7)] == [cursor.next(g) for _ in range(7)]
