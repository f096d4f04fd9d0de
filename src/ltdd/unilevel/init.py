"""Initialisation of the synthetic set from real images: confidence-guided (spec §1.4) or herding.

Confidence-guided multi-round selection, vectorised over classes:

Candidates are K crops of up to `max_images_per_class` real images per class, scored by the
teacher's log-probability of the true class. Classes are padded to the largest class with masked
(−inf) entries that can never be selected. Each round, every real image offers its best unused
crop; a class keeps the top offers up to its free slots. With n_c ≥ IPC all picks come from
distinct images; with n_c < IPC each image is used ⌊IPC/n_c⌋ or ⌈IPC/n_c⌉ times.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ltdd.errors import UserError
from ltdd.select import extract_features, select_herding
from ltdd.unilevel.crops import apply_crops, sample_crop_boxes


def multi_round_select(scores: Tensor, ipc: int) -> tuple[Tensor, Tensor]:
    """Pick `ipc` (image, crop) pairs per class from scores (C, M, K), −inf = padding.

    Returns (C, ipc) image positions and (C, ipc) crop indices, each class in selection order.
    """
    num_classes, m, k = scores.shape
    valid = torch.isfinite(scores)
    if (valid.sum(dim=(1, 2)) < ipc).any():
        raise UserError(
            f"a class has fewer than ipc={ipc} candidate crops; raise unilevel.init.crops_per_image"
        )
    used = ~valid
    picked_img = torch.full((num_classes, ipc), -1, dtype=torch.long)
    picked_crop = torch.full((num_classes, ipc), -1, dtype=torch.long)
    filled = torch.zeros(num_classes, dtype=torch.long)
    while (filled < ipc).any():
        masked = scores.masked_fill(used, float("-inf"))
        best, crop = masked.max(dim=2)  # (C, M): each image's best unused crop
        order = best.argsort(dim=1, descending=True)
        ranked = best.gather(1, order)
        for c in range(num_classes):  # at most C·rounds small steps; the heavy work is above
            free = ipc - int(filled[c])
            if free == 0:
                continue
            offers = order[c][torch.isfinite(ranked[c])][:free]
            take = len(offers)
            picked_img[c, filled[c] : filled[c] + take] = offers
            picked_crop[c, filled[c] : filled[c] + take] = crop[c, offers]
            used[c, offers, crop[c, offers]] = True
            filled[c] += take
    return picked_img, picked_crop


def candidate_pool(
    labels: np.ndarray, num_classes: int, max_per_class: int, generator: torch.Generator
) -> Tensor:
    """(C, M) dataset indices of the scored images per class, −1 = padding (M = largest class)."""
    per_class = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) > max_per_class:
            keep = torch.randperm(len(members), generator=generator)[:max_per_class].numpy()
            members = np.sort(members[keep])
        per_class.append(members)
    width = max(len(p) for p in per_class)
    pool = torch.full((num_classes, width), -1, dtype=torch.long)
    for c, members in enumerate(per_class):
        pool[c, : len(members)] = torch.as_tensor(members)
    return pool


@torch.no_grad()
def confidence_init(
    teacher: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    ipc: int,
    crops_per_image: int,
    crop_scale: tuple[float, float],
    max_per_class: int,
    seed: int,
    batch_size: int = 1000,
) -> tuple[Tensor, Tensor, dict]:
    """IPC crops per class chosen by the teacher's confidence; returns (images, classes, info)."""
    gen = torch.Generator().manual_seed(seed)
    pool = candidate_pool(labels.numpy(), num_classes, max_per_class, gen)
    m, k = pool.shape[1], crops_per_image
    side, cx, cy = sample_crop_boxes(num_classes * m * k, crop_scale, gen)
    boxes = [v.view(num_classes, m, k) for v in (side, cx, cy)]
    valid = pool >= 0
    flat_img = pool[valid]  # (V,) dataset indices
    flat_cls = torch.arange(num_classes)[:, None].expand(-1, m)[valid]
    device = next(teacher.parameters()).device
    teacher.eval()
    scores = torch.full((num_classes, m, k), float("-inf"))
    valid_scores = torch.empty(len(flat_img), k)
    for j in range(k):
        s, x0, y0 = (b[valid][:, j] for b in boxes)
        for start in range(0, len(flat_img), batch_size):
            sl = slice(start, start + batch_size)
            crops = apply_crops(images[flat_img[sl]], s[sl], x0[sl], y0[sl]).to(device)
            logp = torch.log_softmax(teacher(crops).float(), dim=1).cpu()
            valid_scores[sl, j] = logp.gather(1, flat_cls[sl, None]).squeeze(1)
    scores[valid] = valid_scores
    pos, crop = multi_round_select(scores, ipc)
    cls = torch.arange(num_classes)[:, None].expand(-1, ipc)
    src = pool[cls, pos]
    picked = [b[cls, pos, crop].reshape(-1) for b in boxes]
    out = apply_crops(images[src.reshape(-1)], *picked)
    info = {
        "source_indices": src.reshape(-1).tolist(),
        "mean_score": float(scores[cls, pos, crop].mean()),
        "scored_crops": int(valid.sum()) * k,
    }
    return out, cls.reshape(-1).clone(), info


@torch.no_grad()
def herding_init(
    observer: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    ipc: int,
    max_per_class: int,
    seed: int,
) -> tuple[Tensor, Tensor, dict]:
    """IPC whole images per class chosen by herding (`ltdd.select.select_herding`) on the
    observer's penultimate features (`observer.features`), among the same seeded pool of at most
    `max_per_class` images per class that `confidence_init` scores. A class with fewer than IPC
    images repeats its herding order (tail policy `duplicate`). Returns (images, classes, info)."""
    gen = torch.Generator().manual_seed(seed)
    pool = candidate_pool(labels.numpy(), num_classes, max_per_class, gen)
    flat = pool[pool >= 0]  # dataset indices, class by class
    features = extract_features(observer, images[flat])
    picks = select_herding(features, labels[flat].numpy(), num_classes, ipc, "duplicate")
    src = flat[torch.as_tensor(picks)]
    info = {"source_indices": src.tolist(), "features": "observer", "pool_images": len(flat)}
    return images[src].clone(), labels[src].clone(), info
