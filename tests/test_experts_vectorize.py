"""K experts trained together with vmap equal the same experts trained one by one."""

import torch

from ltdd.experts import train_experts
from ltdd.experts.trainer import expert_seed

from experts_support import (
    single_thread,  # noqa: F401 (autouse fixture)
    tiny_config,
    tiny_data,
)


def test_vectorised_equals_one_by_one(tmp_path):
    data = tiny_data()
    common = dict(num_experts=3, epochs=3, momentum=0.9, sampler="class_aware")
    together = train_experts(
        tiny_config(vectorize=3, **common), data, tmp_path / "k3", progress=False
    )
    alone = train_experts(tiny_config(vectorize=1, **common), data, tmp_path / "k1", progress=False)
    for i in range(3):
        assert together.manifest["experts"][i]["seed"] == alone.manifest["experts"][i]["seed"]
        assert torch.equal(together.snapshot(i, 0), alone.snapshot(i, 0))  # same init
        for epoch in together.epochs[1:]:
            a, b = together.snapshot(i, epoch), alone.snapshot(i, epoch)
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (i, epoch, (a - b).abs().max())
    # the experts are different from each other: own init, batch order and DSA draws
    assert not torch.allclose(together.final(0), together.final(1))


def test_expert_seeds_depend_on_seed_and_index_only():
    seeds = {expert_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150
    assert expert_seed(0, 7) == expert_seed(0, 7)
