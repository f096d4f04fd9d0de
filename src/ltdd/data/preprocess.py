"""Preprocessing fitted once on the training split: per-channel normalisation and ZCA whitening.

Every class has the scikit-learn transformer shape: `__init__` only stores its arguments, `fit`
learns state into attributes ending in `_` and returns `self`, and `transform` before `fit` raises
`NotFittedError`. `Preprocessing` chains both and is saved once in `preprocess.safetensors`, so
every stage (experts, distillation, evaluation) works in exactly the same input space.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ltdd.errors import UserError
from ltdd.io import load_tensors, save_tensors

CHUNK_ROWS = 2048  # rows per matrix product: bounds the float64 temporaries in fit and transform


class NotFittedError(RuntimeError):
    """A transformer was used before `fit` (or before being rebuilt from saved tensors)."""


def _check_fitted(obj: object, attr: str) -> None:
    if getattr(obj, attr, None) is None:
        name = type(obj).__name__
        raise NotFittedError(
            f"this {name} instance is not fitted yet; call fit(train_images) first "
            "or rebuild it with Preprocessing.load(path)"
        )


def _check_images(x: Tensor, what: str) -> None:
    if x.ndim != 4:
        raise UserError(f"{what} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise UserError(f"{what} is empty; at least one image is needed")


class Normalizer:
    """Per-channel standardisation `(x - mean_[c]) / std_[c]` of float images (N, C, H, W).

    `std_` is the population standard deviation over all pixels of a channel (ddof = 0).
    """

    def __init__(self) -> None:
        self.mean_: Tensor | None = None
        self.std_: Tensor | None = None

    def fit(self, x: Tensor) -> Normalizer:
        """Learn per-channel mean and std from training images, accumulating in float64."""
        _check_images(x, "images to fit the normaliser on")
        total = torch.zeros(x.shape[1], dtype=torch.float64)
        total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
        for chunk in x.split(CHUNK_ROWS):
            chunk = chunk.detach().to("cpu", torch.float64)
            total += chunk.sum(dim=(0, 2, 3))
            total_sq += chunk.square().sum(dim=(0, 2, 3))
        count = x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / count
        var = (total_sq / count - mean.square()).clamp_min(0.0)
        std = var.sqrt()
        if bool((std == 0).any()):
            raise UserError("a channel of the training images is constant; cannot normalise it")
        self.mean_ = mean.float()
        self.std_ = std.float()
        return self

    def transform(self, x: Tensor) -> Tensor:
        _check_fitted(self, "mean_")
        mean, std = (t.to(x.device, x.dtype).view(1, -1, 1, 1) for t in (self.mean_, self.std_))
        return (x - mean) / std

    def inverse_transform(self, x: Tensor) -> Tensor:
        _check_fitted(self, "mean_")
        mean, std = (t.to(x.device, x.dtype).view(1, -1, 1, 1) for t in (self.mean_, self.std_))
        return x * std + mean

    def to(self, device: torch.device | str) -> Normalizer:
        """Move the fitted state to `device` (in place) and return self."""
        _check_fitted(self, "mean_")
        self.mean_, self.std_ = self.mean_.to(device), self.std_.to(device)
        return self


class ZCAWhitening:
    """Soft ZCA whitening of flattened images, as kornia's `ZCAWhitening(eps, unbiased=True)`.

    With X the (N, D) training matrix, mu its per-feature mean and
    Sigma = (X - mu)^T (X - mu) / (N - 1) = U diag(S) U^T, the whitening matrix is
    `matrix_ = U diag((S + eps)^-1/2) U^T` and its inverse `inverse_ = U diag((S + eps)^1/2) U^T`.
    The eigendecomposition uses `torch.linalg.eigh` in float64: Sigma is symmetric positive
    semi-definite, so eigh is cheaper and more accurate than the SVD the reference used, and gives
    the same matrices (eigenvalues below zero from rounding are clamped to 0).
    Matrices are stored in float32; `transform` maps x to `(flat(x) - mu) @ matrix_`.
    """

    def __init__(self, eps: float = 0.1) -> None:
        self.eps = eps
        self.mean_: Tensor | None = None
        self.matrix_: Tensor | None = None
        self.inverse_: Tensor | None = None

    def fit(self, x: Tensor) -> ZCAWhitening:
        """Learn mean, whitening and inverse matrices from training images (N, ...)."""
        if not self.eps > 0:
            raise UserError(f"zca_eps must be > 0, got {self.eps!r}")
        if x.ndim < 2 or x.shape[0] < 2:
            raise UserError(f"ZCA needs at least 2 training images, got shape {tuple(x.shape)}")
        flat = x.detach().reshape(x.shape[0], -1)
        n, d = flat.shape
        mean = torch.zeros(d, dtype=torch.float64)
        for chunk in flat.split(CHUNK_ROWS):
            mean += chunk.to("cpu", torch.float64).sum(dim=0)
        mean /= n
        cov = torch.zeros(d, d, dtype=torch.float64)
        for chunk in flat.split(CHUNK_ROWS):
            centred = chunk.to("cpu", torch.float64) - mean
            cov.addmm_(centred.T, centred)
        cov /= n - 1
        eigvals, eigvecs = torch.linalg.eigh(cov)
        del cov
        shifted = eigvals.clamp_min(0.0) + self.eps
        self.mean_ = mean.float()
        self.matrix_ = ((eigvecs * shifted.rsqrt()) @ eigvecs.T).float()
        self.inverse_ = ((eigvecs * shifted.sqrt()) @ eigvecs.T).float()
        return self

    def _apply(
        self, x: Tensor, matrix: Tensor, before: Tensor | None, after: Tensor | None
    ) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != matrix.shape[0]:
            raise UserError(
                f"images have {flat.shape[1]} values each but the ZCA was fitted on "
                f"{matrix.shape[0]}; use the preprocessing fitted on this dataset"
            )
        matrix = matrix.to(x.device, x.dtype)
        parts = []
        for chunk in flat.split(CHUNK_ROWS):
            if before is not None:
                chunk = chunk - before.to(x.device, x.dtype)
            out = chunk @ matrix
            if after is not None:
                out = out + after.to(x.device, x.dtype)
            parts.append(out)
        return torch.cat(parts).reshape(x.shape)

    def transform(self, x: Tensor) -> Tensor:
        """Whiten: `(flat(x) - mean_) @ matrix_`, reshaped back to x's shape."""
        _check_fitted(self, "matrix_")
        return self._apply(x, self.matrix_, before=self.mean_, after=None)

    def inverse_transform(self, y: Tensor) -> Tensor:
        """Un-whiten: `flat(y) @ inverse_ + mean_`, reshaped back to y's shape."""
        _check_fitted(self, "matrix_")
        return self._apply(y, self.inverse_, before=None, after=self.mean_)

    def to(self, device: torch.device | str) -> ZCAWhitening:
        """Move the fitted state to `device` (in place) and return self."""
        _check_fitted(self, "matrix_")
        self.mean_ = self.mean_.to(device)
        self.matrix_ = self.matrix_.to(device)
        self.inverse_ = self.inverse_.to(device)
        return self


def _as_float01(images: Tensor | np.ndarray) -> Tensor:
    """uint8 images -> float32 in [0, 1]; float images must already lie in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise UserError(f"images must be uint8 or float in [0, 1], got dtype {x.dtype}")
    x = x.float()
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise UserError(
            "float images must lie in [0, 1] (divide 0-255 values by 255, or pass uint8), "
            f"got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )
    return x


class Preprocessing:
    """Images in [0, 1] -> model-input space: optional per-channel normalisation, then optional ZCA.

    `fit` takes the uint8 training images (N, C, H, W); `transform` accepts uint8 (numpy or tensor)
    or float images in [0, 1] and returns float32; `inverse_transform` maps model-space tensors back
    to pictures in [0, 1] (clamped).
    """

    def __init__(self, normalize: bool = True, zca: bool = True, zca_eps: float = 0.1) -> None:
        self.normalize = normalize
        self.zca = zca
        self.zca_eps = zca_eps
        self.image_shape_: tuple[int, int, int] | None = None
        self.normalizer_: Normalizer | None = None
        self.zca_: ZCAWhitening | None = None

    def fit(self, images: Tensor | np.ndarray) -> Preprocessing:
        """Fit the normaliser on the [0, 1] training images, then the ZCA on normalised ones."""
        x = _as_float01(images)
        _check_images(x, "training images")
        self.normalizer_ = Normalizer().fit(x) if self.normalize else None
        if self.normalizer_ is not None:
            x = self.normalizer_.transform(x)
        self.zca_ = ZCAWhitening(self.zca_eps).fit(x) if self.zca else None
        self.image_shape_ = tuple(int(s) for s in x.shape[1:])
        return self

    def _check_shape(self, x: Tensor) -> None:
        _check_images(x, "images")
        if tuple(x.shape[1:]) != self.image_shape_:
            raise UserError(
                f"images have shape (C, H, W) = {tuple(x.shape[1:])} but the preprocessing was "
                f"fitted on {self.image_shape_}; use the preprocessing fitted on this dataset"
            )

    def transform(self, images: Tensor | np.ndarray) -> Tensor:
        """Images (uint8, or float in [0, 1]) -> float32 tensor in model-input space."""
        _check_fitted(self, "image_shape_")
        x = _as_float01(images)
        self._check_shape(x)
        if self.normalizer_ is not None:
            x = self.normalizer_.transform(x)
        if self.zca_ is not None:
            x = self.zca_.transform(x)
        return x

    def inverse_transform(self, x: Tensor) -> Tensor:
        """Model-space tensor -> images in [0, 1] (clamped), for pictures."""
        _check_fitted(self, "image_shape_")
        x = x.detach().float()
        self._check_shape(x)
        if self.zca_ is not None:
            x = self.zca_.inverse_transform(x)
        if self.normalizer_ is not None:
            x = self.normalizer_.inverse_transform(x)
        return x.clamp(0.0, 1.0)

    def to(self, device: torch.device | str) -> Preprocessing:
        """Move the fitted state to `device` (in place) and return self."""
        _check_fitted(self, "image_shape_")
        for part in (self.normalizer_, self.zca_):
            if part is not None:
                part.to(device)
        return self

    def meta(self) -> dict:
        """JSON-ready settings: normalize, zca, zca_eps and (once fitted) image_shape."""
        out = {"normalize": self.normalize, "zca": self.zca, "zca_eps": self.zca_eps}
        if self.image_shape_ is not None:
            out["image_shape"] = list(self.image_shape_)
        return out

    def to_tensors(self) -> dict[str, Tensor]:
        """The fitted state as named CPU tensors (see `from_tensors`)."""
        _check_fitted(self, "image_shape_")
        out = {"image_shape": torch.tensor(self.image_shape_, dtype=torch.int64)}
        if self.normalizer_ is not None:
            out["normalize.mean"] = self.normalizer_.mean_.cpu()
            out["normalize.std"] = self.normalizer_.std_.cpu()
        if self.zca_ is not None:
            out["zca.mean"] = self.zca_.mean_.cpu()
            out["zca.matrix"] = self.zca_.matrix_.cpu()
            out["zca.inverse"] = self.zca_.inverse_.cpu()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], meta: dict | None = None) -> Preprocessing:
        """Rebuild a fitted instance from `to_tensors()` output and (optionally) `meta()`.

        Without `meta`, which steps are present is read from the tensor names.
        """
        normalize = "normalize.mean" in tensors
        zca = "zca.matrix" in tensors
        meta = meta if meta is not None else {"normalize": normalize, "zca": zca}
        need = ["image_shape"]
        need += ["normalize.mean", "normalize.std"] if meta.get("normalize") else []
        need += ["zca.mean", "zca.matrix", "zca.inverse"] if meta.get("zca") else []
        missing = [k for k in need if k not in tensors]
        if missing:
            raise UserError(
                f"preprocessing tensors lack {', '.join(missing)}; "
                "re-create them by preparing the data again"
            )
        obj = cls(bool(meta["normalize"]), bool(meta["zca"]), float(meta.get("zca_eps", 0.1)))
        obj.image_shape_ = tuple(int(s) for s in tensors["image_shape"].tolist())
        if obj.normalize:
            obj.normalizer_ = Normalizer()
            obj.normalizer_.mean_ = tensors["normalize.mean"]
            obj.normalizer_.std_ = tensors["normalize.std"]
        if obj.zca:
            obj.zca_ = ZCAWhitening(obj.zca_eps)
            obj.zca_.mean_ = tensors["zca.mean"]
            obj.zca_.matrix_ = tensors["zca.matrix"]
            obj.zca_.inverse_ = tensors["zca.inverse"]
        return obj

    def save(self, path: str | Path) -> None:
        """Write the fitted state atomically to a safetensors file (settings in its metadata)."""
        save_tensors(path, self.to_tensors(), self.meta())

    @classmethod
    def load(cls, path: str | Path) -> Preprocessing:
        """Read a file written by `save`; a missing or corrupt file is a UserError."""
        tensors, meta = load_tensors(path)
        try:
            if meta and not isinstance(meta, dict):
                raise UserError(f"metadata is a {type(meta).__name__}, not a mapping")
            obj = cls.from_tensors(tensors, meta or None)
            shape = obj.image_shape_
            if len(shape) != 3 or min(shape) < 1 or math.prod(shape) > 2**24:
                raise UserError(f"image_shape {shape} is not a C×H×W image shape")
            obj.inverse_transform(obj.transform(torch.zeros((1, *shape), dtype=torch.uint8)))
            return obj
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UserError(
                f"{path}: damaged preprocessing file ({type(exc).__name__}: {str(exc)[:80]}); "
                "prepare the data again"
            ) from None
