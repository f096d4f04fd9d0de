"""ExpertsConfig: presets per kind, explicit resolution, validation and the hashed view."""

import dataclasses

import pytest

from ltdd.config import from_dict, load_config
from ltdd.errors import UserError
from ltdd.experts.config import ExpertsConfig, hashed_config


def test_representation_preset_matches_reference():
    cfg = ExpertsConfig().resolved()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay) == (0.01, 0.0, 5e-3)
    assert (cfg.gsam, cfg.rho, cfg.gsam_alpha, cfg.adaptive) == (True, 0.01, 0.3, True)
    assert (cfg.epochs, cfg.batch_size, cfg.dsa, cfg.sampler) == (100, 256, True, "uniform")
    assert cfg.save_epochs == list(range(101))


def test_classifier_mtt_datm_presets():
    cls = ExpertsConfig(kind="classifier").resolved()
    assert (cls.epochs, cls.weight_decay, cls.sampler, cls.num_samples_cls) == (
        10,
        0.0,
        "class_aware",
        4,
    )
    assert cls.gsam and cls.maxnorm is False and cls.maxnorm_thresh == 0.1
    mtt = ExpertsConfig(kind="mtt").resolved()
    assert (mtt.gsam, mtt.weight_decay, mtt.momentum, mtt.epochs) == (False, 0.0, 0.0, 50)
    datm = ExpertsConfig(kind="datm").resolved()
    assert (datm.gsam, datm.weight_decay, datm.epochs) == (True, 0.0, 100)


def test_resolution_fills_only_none_and_is_idempotent():
    cfg = ExpertsConfig(kind="classifier", lr=0.1, maxnorm=True, save_epochs=[10, 0, 5, 5])
    resolved = cfg.resolved()
    assert resolved.lr == 0.1 and resolved.maxnorm is True
    assert resolved.save_epochs == [0, 5, 10]
    assert resolved.resolved() == resolved
    assert all(
        getattr(resolved, f.name) is not None
        for f in dataclasses.fields(resolved)
        if f.name not in ("width", "depth", "norm")
    )


def test_bad_values_are_user_errors():
    with pytest.raises(UserError, match="kind must be one of"):
        from_dict(ExpertsConfig, {"kind": "teacher"})
    with pytest.raises(UserError, match="momentum must be < 1"):
        load_config(ExpertsConfig, None, ["momentum=1.5"])
    with pytest.raises(UserError, match="dtype must be one of"):
        from_dict(ExpertsConfig, {"dtype": "int8"})
    with pytest.raises(UserError, match=r"save_epochs must lie in 0\.\.10"):
        ExpertsConfig(kind="classifier", save_epochs=[0, 11]).resolved()
    with pytest.raises(UserError, match="at least one epoch"):
        ExpertsConfig(save_epochs=[]).resolved()


def test_hash_view_ignores_device_but_not_settings():
    a = hashed_config(ExpertsConfig(device="cpu"))
    assert a == hashed_config(ExpertsConfig(device="cuda"))
    assert a != hashed_config(ExpertsConfig(lr=0.02))
    assert "device" not in a and a["lr"] == 0.01
