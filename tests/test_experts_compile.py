"""`compile: true` for classifier experts: the compiled frozen-backbone forward agrees with the
eager one, leaves the hashes alone, and falls back to eager when compilation fails.

Tolerance: compiled kernels fuse instance norm, ReLU and pooling and sum in another order, so
features differ from eager ones by float rounding (measured: 2e-6 to 5e-6 absolute on features
of magnitude 2-3 at widths 16-128). After a few SGD steps on those features the classifier
weights agree to 1e-5 relative here. Each compilation of the tiny model costs a few seconds
(about 10 s with a cold inductor cache), so this file compiles three times.
"""

import logging

import pytest
import torch

from ltdd.errors import UserError
from ltdd.experts import train_experts
from ltdd.experts.config import ExpertsConfig, hashed_config, stage_config
from ltdd.experts.trainer import Engine
from ltdd.models.compiled import CompiledForShape

from experts_support import (
    SHAPE,
    single_thread,  # noqa: F401 (autouse fixture)
    tiny_config,
    tiny_data,
)

pytestmark = [
    pytest.mark.slow,
    # inductor's import touches torch.jit.script_method, which torch 2.13 deprecates
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),
]


def test_compiled_features_agree_and_other_shapes_run_eagerly():
    engine = Engine(tiny_config(kind="classifier", compile=True), 3, SHAPE, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    frozen = engine.init_params(1)[None, : engine.start]
    x = torch.randn(1, 16, *SHAPE, generator=gen)
    with torch.no_grad():
        eager = engine._body(frozen[0], x[0])
    compiled = engine.features(frozen, x)[0]
    assert engine._single.ready and not engine._single.failed  # it really ran compiled
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    assert eager.abs().max() > 0.1  # the comparison is not between near-zero tensors
    short = x[:, :5]  # the short last batch of an epoch: eager, so bit-identical
    assert torch.equal(engine.features(frozen, short)[0], engine._body(frozen[0], short[0]))


def test_compiled_training_matches_eager_within_tolerance(tmp_path, monkeypatch):
    made: list[CompiledForShape] = []

    class Recorded(CompiledForShape):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr("ltdd.experts.trainer.CompiledForShape", Recorded)
    data = tiny_data()
    rep = train_experts(
        tiny_config(num_experts=1, epochs=1), data, tmp_path / "rep", progress=False
    )
    stores = {}
    for flag in (False, True):
        cfg = tiny_config(kind="classifier", num_experts=1, vectorize=1, epochs=2, compile=flag)
        stores[flag] = train_experts(
            cfg, data, tmp_path / f"cls-{flag}", source=rep, progress=False
        )
    eager, compiled = stores[False], stores[True]
    assert any(c.ready and not c.failed for c in made)  # training really ran compiled
    assert compiled.config_hash == eager.config_hash
    assert compiled.manifest["config"]["compile"] is True
    start = rep.manifest["classifier_start"]
    for epoch in (1, 2):
        a, b = eager.snapshot(0, epoch), compiled.snapshot(0, epoch)
        assert torch.equal(a[:start], b[:start])  # the frozen backbone is untouched
        assert not torch.equal(a[start:], rep.final(0)[start:])  # the classifier did train
        torch.testing.assert_close(b[start:], a[start:], rtol=1e-5, atol=1e-6)


def test_failed_compilation_falls_back_to_eager(monkeypatch, caplog):
    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found\ndetails")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    wrapped = CompiledForShape(lambda a: a * 2, "a doubling")
    with caplog.at_level(logging.WARNING, logger="ltdd.models.compiled"):
        out = wrapped(torch.ones(3))
        again = wrapped(torch.ones(3))
    assert torch.equal(out, torch.full((3,), 2.0)) and torch.equal(again, out)
    assert wrapped.failed
    (record,) = caplog.records  # one warning, one line, naming what failed and why
    assert "a doubling" in record.getMessage() and "no C++ compiler found" in record.getMessage()
    assert "\n" not in record.getMessage()


def test_an_error_of_the_function_itself_is_not_swallowed(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)  # "compiled" = eager

    def bad(a):
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        CompiledForShape(bad, "bad")(torch.ones(2))


def test_compile_is_a_speed_key_for_classifier_experts_only():
    base = ExpertsConfig(kind="classifier")
    on = ExpertsConfig(kind="classifier", compile=True)
    assert hashed_config(on) == hashed_config(base)
    assert stage_config(on) == stage_config(base)
    assert "compile" not in stage_config(on) and "device" in stage_config(on)
    with pytest.raises(UserError, match="compile: true applies only to kind=classifier"):
        ExpertsConfig(kind="representation", compile=True).resolved()
