"""Normalisation and ZCA against independent numpy float64 oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ltdd.data.preprocess import Normalizer, NotFittedError, Preprocessing, ZCAWhitening
from ltdd.errors import UserError

EPS = 0.1


def correlated_images(n: int = 300, shape=(3, 4, 4), seed: int = 0) -> np.ndarray:
    """Float64 images with strongly correlated features and a spread of eigenvalues."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    mix = rng.normal(size=(d, d)) * rng.uniform(0.01, 1.0, size=d)
    x = rng.normal(size=(n, d)) @ mix.T + rng.normal(size=d)
    return x.reshape(n, *shape)


def uint8_images(n: int = 200, shape=(3, 4, 4), seed: int = 1) -> np.ndarray:
    """Smooth-ish uint8 images: a per-image brightness plus per-pixel noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, size=(n, 1, 1, 1))
    noise = rng.normal(0, 25, size=(n, *shape))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def numpy_zca(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference recipe in numpy float64 via SVD: mean, W = U (S+eps)^-1/2 U^T, inverse."""
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=0)
    cov = np.cov(flat, rowvar=False)  # unbiased, N - 1
    u, s, _ = np.linalg.svd(cov)
    return mean, (u / np.sqrt(s + eps)) @ u.T, (u * np.sqrt(s + eps)) @ u.T


def test_normalizer_matches_numpy_mean_and_population_std():
    x = np.random.default_rng(2).uniform(size=(50, 3, 5, 6))
    x[:, 1] *= 0.3
    norm = Normalizer().fit(torch.from_numpy(x).float())
    np.testing.assert_allclose(norm.mean_.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(norm.std_.numpy(), x.std(axis=(0, 2, 3)), rtol=1e-5)
    z = norm.transform(torch.from_numpy(x).float()).double().numpy()
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1.0, rtol=1e-5)
    back = norm.inverse_transform(torch.from_numpy(z).float()).numpy()
    np.testing.assert_allclose(back, x, atol=1e-5)


def test_zca_matrix_matches_numpy_reference():
    x = correlated_images()
    zca = ZCAWhitening(eps=EPS).fit(torch.from_numpy(x))
    mean, w, w_inv = numpy_zca(x, EPS)
    assert zca.matrix_.dtype == torch.float32
    np.testing.assert_allclose(zca.mean_.numpy(), mean, rtol=1e-5, atol=1e-5)
    scale = np.abs(w).max()
    np.testing.assert_allclose(zca.matrix_.numpy(), w, atol=1e-5 * scale)
    np.testing.assert_allclose(zca.inverse_.numpy(), w_inv, atol=1e-5 * np.abs(w_inv).max())


def test_whitened_training_data_has_zero_mean_and_eigenvalues_s_over_s_plus_eps():
    x = correlated_images()
    flat = x.reshape(len(x), -1)
    s = np.linalg.eigvalsh(np.cov(flat, rowvar=False))  # independent oracle, ascending
    y = ZCAWhitening(eps=EPS).fit(torch.from_numpy(x)).transform(torch.from_numpy(x))
    assert y.shape == x.shape
    yf = y.double().reshape(len(x), -1).numpy()
    np.testing.assert_allclose(yf.mean(axis=0), 0.0, atol=1e-5)
    got = np.linalg.eigvalsh(np.cov(yf, rowvar=False))
    np.testing.assert_allclose(got, s / (s + EPS), atol=1e-4)
    assert s.min() < EPS < s.max()  # the oracle really exercises the soft regime


def test_zca_inverse_round_trips_and_chunking_is_invisible(monkeypatch):
    x = torch.from_numpy(correlated_images()).float()
    zca = ZCAWhitening(eps=EPS).fit(x)
    y = zca.transform(x)
    torch.testing.assert_close(zca.inverse_transform(y), x, atol=1e-4, rtol=1e-4)
    monkeypatch.setattr("ltdd.data.preprocess.CHUNK_ROWS", 7)
    torch.testing.assert_close(zca.transform(x), y, atol=1e-6, rtol=1e-6)
    refit = ZCAWhitening(eps=EPS).fit(x)
    torch.testing.assert_close(refit.matrix_, zca.matrix_, atol=1e-6, rtol=1e-5)


def test_zca_is_differentiable_and_keeps_dtype():
    zca = ZCAWhitening().fit(torch.from_numpy(correlated_images(n=40, shape=(1, 3, 3))))
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    y = zca.transform(x)
    assert y.dtype == torch.float64
    y.sum().backward()
    expected = zca.matrix_.double().sum(dim=1).reshape(1, 1, 3, 3).expand(2, 1, 3, 3)
    torch.testing.assert_close(x.grad, expected)


@pytest.mark.parametrize("cls", [Normalizer, ZCAWhitening, Preprocessing])
def test_transform_before_fit_raises(cls):
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        cls().transform(torch.zeros(2, 1, 2, 2))


def test_preprocessing_pipeline_equals_manual_composition():
    imgs = uint8_images()
    pre = Preprocessing(normalize=True, zca=True, zca_eps=EPS).fit(imgs)
    x01 = imgs.astype(np.float64) / 255.0
    mean, std = x01.mean(axis=(0, 2, 3)), x01.std(axis=(0, 2, 3))
    normed = (x01 - mean[None, :, None, None]) / std[None, :, None, None]
    zmean, w, _ = numpy_zca(normed, EPS)
    expected = ((normed.reshape(len(imgs), -1) - zmean) @ w).reshape(imgs.shape)
    out = pre.transform(imgs)
    assert out.dtype == torch.float32 and out.shape == imgs.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-4)
    torch.testing.assert_close(pre.transform(torch.from_numpy(imgs)), out)
    torch.testing.assert_close(pre.transform(torch.from_numpy(x01).float()), out, atol=1e-5, rtol=0)
    back = pre.inverse_transform(out)
    np.testing.assert_allclose(back.numpy(), x01, atol=1e-4)


@pytest.mark.parametrize(("normalize", "zca"), [(False, False), (True, False), (False, True)])
def test_preprocessing_switches(normalize, zca):
    imgs = uint8_images(n=50)
    pre = Preprocessing(normalize=normalize, zca=zca).fit(imgs)
    out = pre.transform(imgs)
    x01 = torch.from_numpy(imgs).float() / 255
    if not normalize and not zca:
        torch.testing.assert_close(out, x01)
    if normalize and not zca:
        torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    if zca and not normalize:
        torch.testing.assert_close(out.mean(dim=0), torch.zeros(3, 4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(pre.inverse_transform(out), x01, atol=1e-4, rtol=0)


def test_inverse_transform_clamps_to_unit_range():
    pre = Preprocessing().fit(uint8_images(n=50))
    pics = pre.inverse_transform(torch.randn(4, 3, 4, 4) * 50)
    assert float(pics.min()) >= 0.0 and float(pics.max()) <= 1.0


def test_save_load_round_trip(tmp_path):
    imgs = uint8_images(n=60)
    pre = Preprocessing(zca_eps=0.05).fit(imgs)
    path = tmp_path / "preprocess.safetensors"
    pre.save(path)
    loaded = Preprocessing.load(path)
    assert (
        loaded.meta()
        == pre.meta()
        == {
            "normalize": True,
            "zca": True,
            "zca_eps": 0.05,
            "image_shape": [3, 4, 4],
        }
    )
    for key, value in pre.to_tensors().items():
        assert torch.equal(loaded.to_tensors()[key], value), key
    assert torch.equal(loaded.transform(imgs), pre.transform(imgs))
    rebuilt = Preprocessing.from_tensors(pre.to_tensors())
    assert torch.equal(rebuilt.transform(imgs), pre.transform(imgs))


def test_load_of_incomplete_or_missing_file_is_a_user_error(tmp_path):
    pre = Preprocessing().fit(uint8_images(n=30))
    tensors = pre.to_tensors()
    del tensors["zca.inverse"]
    with pytest.raises(UserError, match="lack zca.inverse"):
        Preprocessing.from_tensors(tensors, pre.meta())
    with pytest.raises(UserError, match="no such file"):
        Preprocessing.load(tmp_path / "absent.safetensors")


def test_bad_inputs_raise_user_errors():
    pre = Preprocessing().fit(uint8_images(n=30))
    with pytest.raises(UserError, match=r"fitted on \(3, 4, 4\)"):
        pre.transform(np.zeros((2, 1, 4, 4), dtype=np.uint8))
    with pytest.raises(UserError, match=r"must lie in \[0, 1\]"):
        pre.transform(torch.full((2, 3, 4, 4), 255.0))
    with pytest.raises(UserError, match=r"shape \(N, C, H, W\)"):
        pre.transform(np.zeros((3, 4, 4), dtype=np.uint8))
    with pytest.raises(UserError, match="zca_eps must be > 0"):
        Preprocessing(zca_eps=0.0).fit(uint8_images(n=30))
    with pytest.raises(UserError, match="at least 2"):
        ZCAWhitening().fit(torch.zeros(1, 4))
