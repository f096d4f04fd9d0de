"""Classifier experts: frozen backbone, MaxNorm after every step, source checks."""

import dataclasses

import pytest
import torch

from ltdd.errors import UserError
from ltdd.experts import train_experts
from ltdd.experts.maxnorm import project_rows, row_threshold
from ltdd.experts.trainer import Engine

from experts_support import (
    SHAPE,
    single_thread,  # noqa: F401 (autouse fixture)
    tiny_config,
    tiny_data,
)


def test_maxnorm_threshold_and_projection_by_hand():
    weight = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0]])  # row norms 5, 1, 2
    tau = row_threshold(weight, 0.1)
    assert tau.item() == pytest.approx(1 + 0.1 * 4)
    projected = project_rows(weight, tau)
    assert torch.allclose(projected[0], weight[0] * 1.4 / 5)
    assert torch.allclose(projected[1], weight[1])  # below τ: unchanged
    assert torch.allclose(projected[2].norm(), torch.tensor(1.4))


def test_maxnorm_rows_below_threshold_after_every_step():
    cfg = tiny_config(kind="classifier", maxnorm=True, lr=0.5).resolved()
    plain = dataclasses.replace(cfg, maxnorm=False)
    engine = Engine(cfg, 3, SHAPE, torch.device("cpu"))
    reference = Engine(plain, 3, SHAPE, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    w0 = torch.stack([engine.init_params(s) for s in (1, 2)])
    x = torch.randn(2, 10, *SHAPE, generator=gen)
    y = torch.randint(0, 3, (2, 10), generator=gen)
    frozen, w = w0[:, : engine.start], w0[:, engine.start :]
    buf, tau = torch.zeros_like(w), torch.full((2,), float("nan"))
    first, _, _, _ = reference.step(w, frozen, buf, tau, x, y)
    shape = engine.weight_shape
    expected_tau = torch.stack(
        [row_threshold(first[k, : shape.numel()].view(shape), 0.1) for k in range(2)]
    )
    projected_rows = 0
    for step in range(6):
        w, buf, tau, _ = engine.step(w, frozen, buf, tau, x, y)
        assert torch.allclose(tau, expected_tau)
        norms = w[:, engine.weight_slice].view(2, *shape).norm(dim=2)
        assert (norms <= tau[:, None] * (1 + 1e-5)).all(), (step, norms, tau)
        projected_rows += int((norms > tau[:, None] * 0.999).sum())
    assert projected_rows > 0  # the projection was active, not vacuous


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    data = tiny_data()
    rep = train_experts(tiny_config(num_experts=2, epochs=2), data, root / "rep", progress=False)
    cls_cfg = tiny_config(kind="classifier", num_experts=2, epochs=3, maxnorm=True)
    cls = train_experts(cls_cfg, data, root / "cls", source=rep, progress=False)
    return rep, cls


def test_backbone_bit_identical_to_source(stores):
    rep, cls = stores
    start = rep.manifest["classifier_start"]
    for i in range(2):
        source = rep.final(i)
        assert torch.equal(cls.snapshot(i, 0), source)
        for epoch in cls.epochs:
            assert torch.equal(cls.snapshot(i, epoch)[:start], source[:start])
        assert not torch.equal(cls.final(i)[start:], source[start:])
    assert cls.manifest["source"]["config_hash"] == rep.config_hash


def test_classifier_source_checks(stores, tmp_path):
    rep, cls = stores
    data = tiny_data()
    with pytest.raises(UserError, match="needs the representation experts"):
        train_experts(tiny_config(kind="classifier"), data, tmp_path / "a", progress=False)
    with pytest.raises(UserError, match="start from representation experts"):
        train_experts(
            tiny_config(kind="classifier", num_experts=1), data, tmp_path / "b", source=cls
        )
    with pytest.raises(UserError, match="has 2 representation experts"):
        train_experts(
            tiny_config(kind="classifier", num_experts=3), data, tmp_path / "c", source=rep
        )
    with pytest.raises(UserError, match="other data"):
        train_experts(
            tiny_config(kind="classifier", num_experts=1),
            tiny_data(seed=1),
            tmp_path / "d",
            source=rep,
        )
    with pytest.raises(UserError, match="another architecture"):
        train_experts(
            tiny_config(kind="classifier", num_experts=1, width=5), data, tmp_path / "e", source=rep
        )
    with pytest.raises(UserError, match="only for kind=classifier"):
        train_experts(tiny_config(kind="mtt"), data, tmp_path / "f", source=rep)


def _step_ops(kind: str) -> set[str]:
    cfg = tiny_config(kind=kind).resolved()
    engine = Engine(cfg, 3, SHAPE, torch.device("cpu"))
    w0 = torch.stack([engine.init_params(s) for s in (1, 2)])
    x, y = torch.randn(2, 6, *SHAPE), torch.randint(0, 3, (2, 6))
    frozen, w = w0[:, : engine.start], w0[:, engine.start :]
    with torch.profiler.profile() as prof:
        engine.step(w, frozen, torch.zeros_like(w), torch.zeros(2), x, y)
    return {event.key for event in prof.key_averages()}


def test_classifier_step_computes_no_backbone_gradient():
    assert "aten::convolution_backward" in _step_ops("representation")
    assert "aten::convolution_backward" not in _step_ops("classifier")
