"""Plain SGD (PyTorch semantics: weight decay, momentum, no dampening) on flat tensors."""

from __future__ import annotations

from torch import Tensor


def sgd_step(
    w: Tensor, grad: Tensor, buf: Tensor, lr: float, momentum: float, weight_decay: float
) -> tuple[Tensor, Tensor]:
    """One `torch.optim.SGD` step; returns (new w, new momentum buffer).

    The buffer starts at zeros: PyTorch's first step sets it to d, which equals 0·m + d.
    With momentum 0 the buffer is returned unchanged.
    """
    d = grad + weight_decay * w if weight_decay else grad
    if momentum:
        buf = momentum * buf + d
        d = buf
    return w - lr * d, buf
