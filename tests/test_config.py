from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ltdd.config import from_dict, load_config, parse_overrides, to_dict
from ltdd.data.dataset import DataConfig
from ltdd.errors import UserError


@dataclass(frozen=True)
class Inner:
    lr: float = field(default=0.01, metadata={"gt": 0})
    norm: str = field(default="instance", metadata={"choices": ("instance", "batch")})


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    seeds: tuple[int, ...] = (0,)
    root: Path | None = None
    flag: bool = False


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  lr: 1\nseeds: [1, 2]\n")
    cfg = load_config(Outer, path, ["inner.norm=batch", "flag=true", "root=/x"])
    assert cfg == Outer(Inner(1.0, "batch"), (1, 2), Path("/x"), True)
    assert to_dict(cfg) == {
        "inner": {"lr": 1.0, "norm": "batch"},
        "seeds": [1, 2],
        "root": "/x",
        "flag": True,
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["inner.lr=0"], "inner.lr must be > 0, got 0.0"),
        (["inner.norm=layer"], "inner.norm must be one of instance, batch, got 'layer'"),
        (["inner.lrr=1"], "unknown config key inner.lrr"),
        (["flag=yes please"], "flag must be true or false"),
        (["seeds=3"], "seeds must be a list"),
        (["inner=3"], "inner must be a mapping"),
        (["nokey"], "must look like key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(Outer, None, overrides)


def test_declared_constraints_of_the_data_config():
    with pytest.raises(UserError, match="imbalance_factor must be >= 1, got 0.5"):
        from_dict(DataConfig, {"imbalance_factor": 0.5})
    with pytest.raises(UserError, match="test_profile must be one of"):
        from_dict(DataConfig, {"test_profile": "skewed"})


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(Outer, path)
    with pytest.raises(UserError, match="no such config file"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_override_values_are_parsed_as_yaml():
    assert parse_overrides(["a.b=0.5", "c=[1, 2]", "d=text"]) == {
        "a": {"b": 0.5},
        "c": [1, 2],
        "d": "text",
    }
    assert load_config(Outer, None, ["inner.lr=1e-3"]).inner.lr == 1e-3  # YAML 1.1 reads a str


@dataclass(frozen=True)
class Sections:
    fast: Inner = field(default_factory=lambda: Inner(lr=0.5, norm="batch"))


def test_a_partial_section_keeps_the_fields_own_default():
    cfg = load_config(Sections, None, ["fast.lr=0.25"])
    assert cfg.fast == Inner(lr=0.25, norm="batch")
