"""Models: every registered network, the registry's errors, and the flat-parameter view."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn

from ltdd.errors import UserError
from ltdd.models import (
    MODELS,
    ParamLayout,
    allowed_overrides,
    count_parameters,
    create_model,
    functional_forward,
)

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]
NUM_CLASSES = 7


def _model(name: str, shape: tuple[int, int, int], seed: int = 0, **overrides) -> nn.Module:
    return create_model(name, NUM_CLASSES, shape, seed=seed, **overrides)


def _inputs(shape: tuple[int, ...], batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))


def test_registry_holds_the_documented_models():
    expected = {"convnet", "convnet_d4", "convnet_bn", "alexnet", "vgg11", "vgg11_bn"}
    assert expected | {"resnet18", "resnet18_bn"} <= set(MODELS.names())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", MODELS.names())
def test_output_and_feature_shapes(name, shape):
    model = _model(name, shape)
    x = _inputs(shape)
    assert model(x).shape == (2, NUM_CLASSES)
    assert model.features(x).shape == (2, model.num_features)
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.in_features == model.num_features


@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("name", MODELS.names())
def test_every_parameter_gets_a_finite_gradient(name, shape):
    model = _model(name, shape)
    model(_inputs(shape)).logsumexp(1).sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name", MODELS.names())
def test_classifier_of_features_is_forward(name):
    model = _model(name, (3, 32, 32)).eval()
    x = _inputs((3, 32, 32))
    torch.testing.assert_close(model.classifier(model.features(x)), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS.names())
def test_functional_forward_equals_module_call(name):
    model = _model(name, (1, 28, 28)).eval()
    layout = ParamLayout.from_module(model)
    x = _inputs((1, 28, 28))
    flat = layout.flatten(model)
    torch.testing.assert_close(functional_forward(model, layout, flat, x), model(x))

    # other parameters: the oracle is a copy of the module with those parameters loaded in place
    other = flat + 0.01 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(2))
    loaded = copy.deepcopy(model)
    nn.utils.vector_to_parameters(other, loaded.parameters())
    out = functional_forward(model, layout, other, x)
    torch.testing.assert_close(out, loaded(x))
    assert not torch.allclose(out, model(x))


# (name, image shape, num classes) -> (backbone = classifier_start, total), from reference §3.1/3.4
REFERENCE_COUNTS = [
    ("convnet", (3, 32, 32), 10, 299_520, 320_010),
    ("convnet", (3, 32, 32), 100, 299_520, 504_420),
    ("convnet", (1, 28, 28), 10, 297_216, 297_216 + 2048 * 10 + 10),
    ("convnet_d4", (3, 64, 64), 200, 447_360, 857_160),
    ("resnet18", (3, 32, 32), 10, 11_168_832, 11_168_832 + 512 * 10 + 10),
]


@pytest.mark.parametrize(("name", "shape", "classes", "backbone", "total"), REFERENCE_COUNTS)
def test_parameter_counts_match_the_reference(name, shape, classes, backbone, total):
    model = create_model(name, classes, shape)
    layout = ParamLayout.from_module(model)
    assert layout.classifier_start == backbone
    assert layout.num_params == total
    assert count_parameters(model, "backbone") == backbone
    assert count_parameters(model, "classifier") == total - backbone
    assert count_parameters(model) == total


def test_convnet_parameter_order_is_conv_norm_then_classifier():
    layout = ParamLayout.from_module(_model("convnet", (3, 32, 32)))
    shapes = [tuple(s) for s in layout.shapes]
    assert shapes[:4] == [(128, 3, 3, 3), (128,), (128,), (128,)]
    assert shapes[-2:] == [(NUM_CLASSES, 2048), (NUM_CLASSES,)]
    assert len(shapes) == 3 * 4 + 2


@pytest.mark.parametrize("name", MODELS.names())
def test_masks_split_backbone_and_classifier(name):
    model = _model(name, (3, 32, 32))
    layout = ParamLayout.from_module(model)
    backbone, head = layout.mask("backbone"), layout.mask("classifier")
    n_head = model.classifier.weight.numel() + model.classifier.bias.numel()
    assert n_head == model.num_features * NUM_CLASSES + NUM_CLASSES
    assert int(head.sum()) == n_head
    assert int(backbone.sum()) == layout.classifier_start == layout.num_params - n_head
    assert not (backbone & head).any() and (backbone | head).all()
    assert head[layout.classifier_start :].all()
    assert layout.group_slice("classifier") == slice(layout.classifier_start, layout.num_params)


def test_flatten_is_a_detached_copy_and_unflatten_round_trips():
    model = _model("convnet", (1, 28, 28), width=8)
    layout = ParamLayout.from_module(model)
    flat = layout.flatten(model)
    assert flat.shape == (layout.num_params,) and not flat.requires_grad
    for name, param in model.named_parameters():
        torch.testing.assert_close(layout.unflatten(flat)[name], param, rtol=0, atol=0)
    flat += 1.0
    assert not torch.allclose(layout.flatten(model), flat)
    torch.testing.assert_close(layout.flatten(layout.unflatten(flat)), flat, rtol=0, atol=0)


def test_unflatten_gives_differentiable_views():
    layout = ParamLayout.from_module(_model("convnet", (1, 28, 28), width=8))
    flat = torch.randn(layout.num_params, requires_grad=True)
    pieces = layout.unflatten(flat)
    assert all(p._base is flat for p in pieces.values())
    sum(p.pow(2).sum() for p in pieces.values()).backward()
    torch.testing.assert_close(flat.grad, 2 * flat.detach())


@pytest.mark.parametrize("name", ["convnet", "alexnet"])
def test_vmap_over_experts_equals_a_loop(name):
    shape, experts = (1, 28, 28), 3
    models = [
        _model(name, shape, seed=k, **({"width": 8} if name == "convnet" else {}))
        for k in range(experts)
    ]
    layout = ParamLayout.from_module(models[0])
    flats = torch.stack([layout.flatten(m) for m in models]).requires_grad_(True)
    xs = torch.stack([_inputs(shape, seed=10 + k) for k in range(experts)])
    run = partial(functional_forward, models[0], layout)
    out = torch.func.vmap(run)(flats, xs)
    loop = torch.stack([m(x) for m, x in zip(models, xs, strict=True)])
    torch.testing.assert_close(out, loop)
    out.square().sum().backward()
    for k, model in enumerate(models):
        model.zero_grad()
        model(xs[k]).square().sum().backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(flats.grad[k], grads)


def test_layout_rejects_mismatched_inputs():
    layout = ParamLayout.from_module(_model("convnet", (1, 28, 28), width=8))
    with pytest.raises(ValueError, match="shape"):
        layout.unflatten(torch.zeros(layout.num_params + 1))
    with pytest.raises(ValueError, match="names"):
        layout.flatten(_model("convnet", (1, 28, 28), width=8, depth=2))
    with pytest.raises(UserError, match="unknown parameter group 'head'"):
        layout.mask("head")


def test_classifier_must_exist_and_be_the_tail():
    no_head = ParamLayout.from_module(nn.Sequential(nn.Linear(2, 3)))
    with pytest.raises(ValueError, match="no parameters named 'classifier"):
        _ = no_head.classifier_start

    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(2, 3)
            self.body = nn.Linear(3, 3)

    with pytest.raises(ValueError, match="contiguous tail"):
        ParamLayout.from_module(HeadFirst()).mask("backbone")


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match=r"unknown model 'convnet9'; known: alexnet, convnet"):
        create_model("convnet9", 10, (3, 32, 32))


def test_unknown_override_is_a_user_error_naming_allowed_ones():
    with pytest.raises(UserError, match="no option widht; allowed: width, depth, norm, act, pool"):
        create_model("convnet", 10, (3, 32, 32), widht=64)
    with pytest.raises(UserError, match="no option width; allowed: blocks, norm, act"):
        create_model("resnet18", 10, (3, 32, 32), width=64)


def test_none_overrides_are_dropped_and_others_applied():
    default = create_model("convnet_d4", 10, (3, 32, 32), width=None, depth=None, norm=None)
    assert count_parameters(default, "backbone") == 447_360
    narrow = create_model("convnet_d4", 10, (3, 32, 32), width=16, norm="none", pool="max")
    # conv 3->16, then three convs 16->16 (no norm), then 16 channels at 2x2
    assert count_parameters(narrow, "backbone") == (3 * 9 + 1) * 16 + 3 * (16 * 9 + 1) * 16
    assert narrow.num_features == 16 * 2 * 2
    assert not any(isinstance(m, nn.GroupNorm) for m in narrow.modules())
    assert any(isinstance(m, nn.MaxPool2d) for m in narrow.modules())
    assert allowed_overrides("convnet_bn") == ["width", "depth", "norm", "act", "pool"]


def test_variant_defaults():
    assert any(isinstance(m, nn.BatchNorm2d) for m in _model("convnet_bn", (3, 32, 32)).modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in _model("vgg11_bn", (3, 32, 32)).modules())
    norms = [m for m in _model("resnet18", (3, 32, 32)).modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == m.num_channels and m.affine for m in norms)
    assert not any(isinstance(m, nn.GroupNorm) for m in _model("alexnet", (3, 32, 32)).modules())
    resnet_convs = [
        m for m in _model("resnet18", (3, 32, 32)).modules() if isinstance(m, nn.Conv2d)
    ]
    assert all(m.bias is None for m in resnet_convs)


@pytest.mark.parametrize(
    ("overrides", "shape", "message"),
    [
        ({"norm": "layer"}, (3, 32, 32), "unknown norm 'layer'; known: batch, instance, none"),
        ({"act": "tanh"}, (3, 32, 32), "unknown activation 'tanh'"),
        ({"pool": "mean"}, (3, 32, 32), "unknown pooling 'mean'"),
        ({"width": 0}, (3, 32, 32), "width must be a positive integer, got 0"),
        ({"depth": 2.5}, (3, 32, 32), "depth must be a positive integer, got 2.5"),
        ({"depth": 6}, (3, 32, 32), r"cannot take inputs of shape \(3, 32, 32\)"),
        ({}, (3, 32), "image_shape must be three positive integers"),
    ],
)
def test_bad_options_are_user_errors(overrides, shape, message):
    with pytest.raises(UserError, match=message):
        create_model("convnet", 10, shape, **overrides)


def test_bad_num_classes_is_a_user_error():
    with pytest.raises(UserError, match="num_classes must be a positive integer, got 0"):
        create_model("convnet", 0, (3, 32, 32))


def test_seed_makes_init_reproducible_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    a = ParamLayout.from_module(m := _model("convnet", (1, 28, 28), seed=3, width=8)).flatten(m)
    b = ParamLayout.from_module(m := _model("convnet", (1, 28, 28), seed=3, width=8)).flatten(m)
    c = ParamLayout.from_module(m := _model("convnet", (1, 28, 28), seed=4, width=8)).flatten(m)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
