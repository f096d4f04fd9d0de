"""DSA: replayable per-sample draws, hand oracles for every op group, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from ltdd.config import from_dict
from ltdd.data.augment import DSA_OPS, DSAConfig, DSADraw, apply_dsa, dsa, sample_dsa
from ltdd.errors import UserError

GROUPS = ["color", "crop", "cutout", "flip", "scale", "rotate"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draw_for(group: str, n: int, shape, seed: int = 0) -> DSADraw:
    return sample_dsa(n, shape, gen(seed), DSAConfig(strategy=group))


def test_defaults_are_the_reference_param_diff_aug():
    cfg = DSAConfig()
    assert cfg.strategy.split("_") == GROUPS
    assert (cfg.prob_flip, cfg.ratio_scale, cfg.ratio_rotate) == (0.5, 1.2, 15.0)
    assert (cfg.ratio_crop_pad, cfg.ratio_cutout) == (0.125, 0.5)
    assert (cfg.brightness, cfg.saturation, cfg.contrast) == (1.0, 2.0, 0.5)
    assert set(GROUPS) < set(DSA_OPS.names())


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_replay_is_bit_identical_and_shape_dtype_preserved(group, shape):
    x = torch.randn(5, *shape, generator=gen(1))
    draw = draw_for(group, 5, shape)
    out = apply_dsa(x, draw)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(apply_dsa(x, draw), out)
    out64 = apply_dsa(x.double(), draw)
    assert out64.dtype == torch.float64 and torch.equal(apply_dsa(x.double(), draw), out64)
    assert not torch.equal(out, x)


def test_same_seed_same_draws_and_outputs():
    x = torch.randn(6, 3, 8, 8, generator=gen(5))
    for seed in range(8):
        a, b = sample_dsa(6, x.shape[1:], gen(seed)), sample_dsa(6, x.shape[1:], gen(seed))
        assert a.group == b.group and a.params.keys() == b.params.keys()
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
        assert torch.equal(dsa(x, gen(seed)), dsa(x, gen(seed)))
    outs = {dsa(x, gen(seed)).sum().item() for seed in range(8)}
    assert len(outs) > 4


def test_each_group_is_chosen_with_roughly_uniform_frequency():
    g = gen(3)
    counts = dict.fromkeys(GROUPS, 0)
    for _ in range(1200):
        counts[sample_dsa(2, (1, 8, 8), g).group] += 1
    # binomial(1200, 1/6): mean 200, sd ~12.9; +-60 is > 4.5 sd
    assert all(140 <= c <= 260 for c in counts.values()), counts


@pytest.mark.parametrize("group", GROUPS)
def test_per_sample_parameters_differ_across_samples(group):
    draw = draw_for(group, 64, (3, 32, 32))
    for value in draw.params.values():
        assert value.shape[0] == 64
        assert len(torch.unique(value.reshape(64, -1).float(), dim=0)) > 1


def test_color_matches_formulas_on_hand_example():
    x = torch.tensor([[[[0.0, 1.0]], [[2.0, 3.0]]]])  # (1, 2, 1, 2)
    params = {
        "brightness": torch.tensor([0.25]),
        "saturation": torch.tensor([2.0]),
        "contrast": torch.tensor([0.5]),
    }
    out = apply_dsa(x, DSADraw("color", params, 1, (2, 1, 2)))
    # +0.25: [[0.25, 1.25], [2.25, 3.25]]; channel means per pixel [1.25, 2.25]
    # saturation x2 about them: [[-0.75, 0.25], [3.25, 4.25]]; overall mean 1.75
    # contrast x0.5 about 1.75: [[0.5, 1.0], [2.5, 3.0]]
    expected = torch.tensor([[[[0.5, 1.0]], [[2.5, 3.0]]]])
    torch.testing.assert_close(out, expected)


def test_color_parameter_ranges():
    p = draw_for("color", 2000, (3, 4, 4)).params
    assert -0.5 <= p["brightness"].min() < -0.45 and 0.45 < p["brightness"].max() <= 0.5
    assert 0.0 <= p["saturation"].min() < 0.05 and 1.95 < p["saturation"].max() <= 2.0
    assert 0.5 <= p["contrast"].min() < 0.55 and 1.45 < p["contrast"].max() <= 1.5


@pytest.mark.parametrize(("h", "s"), [(28, 4), (32, 4), (64, 8)])
def test_crop_shift_bounds(h, s):
    p = draw_for("crop", 500, (1, h, h)).params
    for key in ("shift_h", "shift_w"):
        assert p[key].abs().max() == s and p[key].min() == -s  # range is [-s, s], both reached


def test_crop_moves_an_impulse_exactly():
    h, w = 9, 7
    x = torch.zeros(4, 1, h, w)
    x[:, 0, 4, 3] = 1.0
    params = {"shift_h": torch.tensor([0, 2, -1, 5]), "shift_w": torch.tensor([0, -3, 1, 0])}
    out = apply_dsa(x, DSADraw("crop", params, 4, (1, h, w)))
    # out[i, j] = x[i + dh, j + dw]: the impulse lands at (4 - dh, 3 - dw)
    for b, (dh, dw) in enumerate([(0, 0), (2, -3), (-1, 1)]):
        expected = torch.zeros(h, w)
        expected[4 - dh, 3 - dw] = 1.0
        assert torch.equal(out[b, 0], expected)
    assert torch.equal(out[3, 0], torch.zeros(h, w))  # shifted 5 rows up: row 4 + 5 = 9 is off


def test_crop_fills_zeros_shifted_in():
    x = torch.ones(1, 2, 6, 6)
    params = {"shift_h": torch.tensor([2]), "shift_w": torch.tensor([-1])}
    out = apply_dsa(x, DSADraw("crop", params, 1, (2, 6, 6)))
    expected = torch.zeros(6, 6)
    expected[:4, 1:] = 1.0
    assert torch.equal(out[0, 0], expected) and torch.equal(out[0, 1], expected)


@pytest.mark.parametrize(("h", "side"), [(28, 14), (32, 16), (6, 3)])
def test_cutout_zeros_exactly_a_clipped_square(h, side):
    draw = draw_for("cutout", 400, (1, h, h))
    out = apply_dsa(torch.ones(400, 1, h, h), draw)
    zero = out[:, 0] == 0
    heights, centres = [], []
    for b in range(400):
        rows = zero[b].any(dim=1).nonzero().flatten()
        cols = zero[b].any(dim=0).nonzero().flatten()
        top, left = int(rows[0]), int(cols[0])
        height, width = len(rows), len(cols)
        assert int(zero[b].sum()) == height * width  # a filled rectangle
        assert zero[b, top : top + height, left : left + width].all()
        assert height <= side and width <= side
        assert height == side or top == 0 or top + height == h  # clipped only at a border
        assert width == side or left == 0 or left + width == h
        heights.append(height)
        # unclipped rows are [centre - side // 2, centre - side // 2 + side)
        clipped_above = top == 0 and height < side
        centres.append(height - (side - side // 2) if clipped_above else top + side // 2)
    assert heights.count(side) > 0 and min(heights) < side  # interior and clipped both occur
    # reference: centre ~ U{0 .. h - side % 2}, both ends reached in 400 draws
    assert min(centres) == 0 and max(centres) == h - side % 2


def test_flip_equals_torch_flip_for_flagged_samples():
    x = torch.randn(1000, 3, 5, 5, generator=gen(2))
    draw = draw_for("flip", 1000, (3, 5, 5))
    out = apply_dsa(x, draw)
    flags = draw.params["flip"]
    assert torch.equal(out[flags], torch.flip(x[flags], dims=[3]))
    assert torch.equal(out[~flags], x[~flags])
    assert 440 < int(flags.sum()) < 560  # Bernoulli(0.5): mean 500, sd 15.8


def test_scale_and_rotate_parameter_ranges():
    theta = draw_for("scale", 2000, (1, 8, 8)).params["theta"]
    sx, sy = theta[:, 0, 0], theta[:, 1, 1]
    assert torch.equal(theta[:, 0, 1:], torch.zeros(2000, 2)) and torch.equal(
        theta[:, 1, ::2], torch.zeros(2000, 2)
    )
    for s in (sx, sy):
        assert 1 / 1.2 <= s.min() < 1 / 1.2 + 0.01 and 1.2 - 0.01 < s.max() <= 1.2
    assert not torch.equal(sx, sy)
    theta = draw_for("rotate", 2000, (1, 8, 8)).params["theta"]
    angle = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))
    assert -15.0 <= angle.min() < -14.9 and 14.9 < angle.max() <= 15.0
    torch.testing.assert_close(theta[:, 0, 1], -theta[:, 1, 0])
    torch.testing.assert_close(theta[:, 1, 1], theta[:, 0, 0])


def test_affine_hand_oracles():
    w = 5
    ramp = torch.arange(w, dtype=torch.float64).expand(1, 1, w, w).clone()  # x[r, c] = c
    theta = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]])
    out = apply_dsa(ramp, DSADraw("scale", {"theta": theta}, 1, (1, w, w)))
    # align_corners=True samples column (w-1)/2 + (c - (w-1)/2) / 2; bilinear is exact on a ramp
    torch.testing.assert_close(out[0, 0], ((w - 1) / 4 + ramp[0, 0] / 2))
    x = torch.randn(2, 3, w, w, generator=gen(4), dtype=torch.float64)
    a = math.pi / 2
    rot = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]] * 2)
    out = apply_dsa(x, DSADraw("rotate", {"theta": rot}, 2, (3, w, w)))
    torch.testing.assert_close(out, torch.rot90(x, k=1, dims=(2, 3)))
    eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]] * 2)
    torch.testing.assert_close(apply_dsa(x, DSADraw("scale", {"theta": eye}, 2, (3, w, w))), x)


@pytest.mark.parametrize("group", GROUPS)
def test_gradcheck_float64(group):
    draw = draw_for(group, 2, (2, 6, 6), seed=7)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=gen(8), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: apply_dsa(t, draw), (x,))


def selection_jacobian(group: str, params: dict, n: int, c: int, h: int, w: int) -> torch.Tensor:
    """Hand-built d out / d x: 1 where an output pixel copies an input pixel, else 0."""
    jac = torch.zeros(n, c, h, w, n, c, h, w, dtype=torch.float64)
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    if group == "crop":
                        si, sj = i + int(params["shift_h"][b]), j + int(params["shift_w"][b])
                    elif group == "flip":
                        si, sj = i, (w - 1 - j) if params["flip"][b] else j
                    else:  # cutout
                        cut = params["top"][b] <= i < params["bottom"][b] and (
                            params["left"][b] <= j < params["right"][b]
                        )
                        si, sj = (-1, -1) if cut else (i, j)
                    if 0 <= si < h and 0 <= sj < w:
                        jac[b, ch, i, j, b, ch, si, sj] = 1.0
    return jac


@pytest.mark.parametrize("group", ["crop", "cutout", "flip"])
def test_selection_ops_have_a_zero_one_jacobian(group):
    n, c, h, w = 3, 2, 6, 6
    draw = draw_for(group, n, (c, h, w), seed=11)
    x = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen(12))
    jac = torch.autograd.functional.jacobian(lambda t: apply_dsa(t, draw), x)
    assert torch.equal(jac, selection_jacobian(group, draw.params, n, c, h, w))


@pytest.mark.parametrize("group", GROUPS)
def test_index_restricts_the_draw_to_a_subset(group):
    x = torch.randn(6, 3, 8, 8, generator=gen(6))
    draw = draw_for(group, 6, (3, 8, 8))
    full = apply_dsa(x, draw)
    for idx in (torch.tensor([4, 0, 2]), torch.tensor([True, False, True, True, False, False])):
        sub = draw.index(idx)
        assert sub.n == len(x[idx])
        assert torch.equal(apply_dsa(x[idx], sub), full[idx])
    assert torch.equal(apply_dsa(x[1:3], draw.index(slice(1, 3))), full[1:3])


def test_draws_live_on_the_generator_device():
    draw = sample_dsa(3, (1, 4, 4), gen(0))
    assert all(v.device.type == "cpu" for v in draw.params.values())
    assert all(v.device.type == "cpu" for v in draw.to("cpu").params.values())


def test_strategy_none_returns_input_unchanged():
    x = torch.randn(3, 1, 4, 4)
    assert dsa(x, gen(0), DSAConfig(strategy="none")) is x


def test_bad_strategy_and_bad_config_are_user_errors():
    with pytest.raises(UserError, match="unknown DSA op group 'blur'; known: color"):
        sample_dsa(2, (1, 4, 4), gen(0), DSAConfig(strategy="color_blur"))
    with pytest.raises(UserError, match="prob_flip must be <= 1.0, got 2.0"):
        from_dict(DSAConfig, {"prob_flip": 2.0})


def test_draw_shape_mismatch_is_rejected():
    draw = sample_dsa(2, (1, 4, 4), gen(0))
    with pytest.raises(ValueError, match="draw is for 2 images of shape"):
        apply_dsa(torch.zeros(3, 1, 4, 4), draw)
