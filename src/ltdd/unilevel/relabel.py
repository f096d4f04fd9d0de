"""Relabelling (spec §1.6): teacher logits as soft labels, stored (static) or computed online."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ltdd.unilevel.adsa import adjust


@torch.no_grad()
def teacher_logits(teacher: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """The teacher's logits on un-augmented images (CPU float32)."""
    teacher.eval()
    device = next(teacher.parameters()).device
    out = [
        teacher(images[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def mix_hard(logits: Tensor, classes: Tensor, weight: float, floor: float = 1e-12) -> Tensor:
    """Logits of (1 − κ)·softmax(logits) + κ·onehot(class): the shared protocol's soft
    cross-entropy to them equals κ·CE(hard) + (1 − κ)·CE(teacher), UL-LT's Eq. 10 κ1 term in
    label form. κ = 0 returns `logits` unchanged; probabilities are floored before the log."""
    if weight == 0:
        return logits
    probs = torch.softmax(logits.double(), dim=1) * (1 - weight)
    probs[torch.arange(len(classes)), classes] += weight
    return probs.clamp_min(floor).log().to(logits.dtype)


class OnlineTeacher:
    """Teacher logits on each augmented batch at evaluation time, ADSA-shifted by τ·log π."""

    def __init__(self, teacher: nn.Module, log_pi: Tensor | None = None, tau: float = 0.0):
        self.teacher = teacher.eval()
        self.log_pi = log_pi
        self.tau = tau

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        logits = self.teacher(x).float()
        if self.log_pi is None or self.tau == 0.0:
            return logits
        return adjust(logits, self.log_pi, self.tau)
