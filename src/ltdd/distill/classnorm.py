"""Per-class normalisation of the image gradient (an option; the official code has none).

DAM weights the phase-1 inner loss by the long-tailed class prior, so the images of a tail class
receive a gradient about n_tail / n_head times smaller than the head's and barely move (issue 9:
head classes moved up to 110 %, tail classes 3-7 %). `class` rescales each class's block of the
image gradient to the mean of the per-class norms: the direction within a class is unchanged,
every class takes a step of the same size, and the total squared norm is unchanged when all
classes already have equal norms.
"""

from __future__ import annotations

from torch import Tensor

IMAGE_GRAD_NORMS = ("none", "class")


def normalise_image_gradient(grad: Tensor, ipc: int, mode: str) -> Tensor:
    """`grad` (C*ipc, ...) with class-contiguous blocks of `ipc` rows; `class`: each block scaled
    to norm mean_c ||block_c|| (a block with zero gradient stays zero); `none`: unchanged."""
    if mode not in IMAGE_GRAD_NORMS:
        raise ValueError(f"mode must be one of {', '.join(IMAGE_GRAD_NORMS)}, got {mode!r}")
    if mode == "none":
        return grad
    blocks = grad.reshape(-1, ipc * grad[0].numel())
    norms = blocks.norm(dim=1, keepdim=True)
    scale = norms.mean() / norms.clamp_min(1e-30)
    return (blocks * scale).reshape(grad.shape)
