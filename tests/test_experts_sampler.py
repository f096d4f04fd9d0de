"""Uniform and class-aware samplers: epoch length, class balance, determinism, resumable state."""

import torch

from ltdd.experts.sampler import ClassAwareSampler, UniformSampler

LABELS = torch.cat([torch.full((n,), c) for c, n in enumerate([50, 20, 7, 3])])


def test_class_aware_epoch_is_balanced():
    sampler = ClassAwareSampler(LABELS, batch_size=16, num_samples_cls=4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        batches = sampler.epoch(gen)
        draws = torch.cat(batches)
        assert len(draws) == 50 * 4  # max_c n_c × C
        assert [len(b) for b in batches] == [16] * 12 + [8]
        counts = torch.bincount(LABELS[draws], minlength=4)
        assert counts.sum() == 200
        assert counts.max() - counts.min() <= 4, counts  # at most one pick of 4 apart
        assert int(counts[3]) >= 48  # the 3-image tail class is drawn as often as the head


def test_class_aware_draws_come_in_runs_of_one_class():
    sampler = ClassAwareSampler(LABELS, batch_size=200, num_samples_cls=4)
    draws = sampler.epoch(torch.Generator().manual_seed(1))[0]
    runs = LABELS[draws].view(-1, 4)
    assert (runs == runs[:, :1]).all()
    # each class iterator cycles through all its images before repeating one
    head = draws[LABELS[draws] == 0][:50]
    assert sorted(head.tolist()) == list(range(50))


def test_class_aware_state_round_trip_continues_identically():
    a = ClassAwareSampler(LABELS, 16, 4)
    gen_a = torch.Generator().manual_seed(3)
    a.epoch(gen_a)
    b = ClassAwareSampler(LABELS, 16, 4)
    b.load_state_dict(a.state_dict())
    gen_b = torch.Generator()
    gen_b.set_state(gen_a.get_state())
    for x, y in zip(a.epoch(gen_a), b.epoch(gen_b), strict=True):
        assert torch.equal(x, y)


def test_uniform_is_a_seeded_permutation():
    sampler = UniformSampler(LABELS, batch_size=32, num_samples_cls=4)
    batches = sampler.epoch(torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [32, 32, 16]
    assert sorted(torch.cat(batches).tolist()) == list(range(80))
    again = sampler.epoch(torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(batches, again, strict=True))
