"""Image grids: one row per class."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure  # not pyplot: the user's backend stays as it is

from ltdd.io import atomic_path


def save_class_grid(
    images: torch.Tensor,
    classes: torch.Tensor,
    class_names: list[str],
    path: str | Path,
    max_per_class: int = 10,
    title: str = "",
) -> None:
    """Save images in [0,1] (N,C,H,W) as a PNG grid, one row per class, up to `max_per_class`."""
    rows = len(class_names)
    cols = max(1, min(max_per_class, max(int((classes == c).sum()) for c in range(rows))))
    fig = Figure(figsize=(cols * 0.9 + 1.6, rows * 0.9 + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for c in range(rows):
        members = torch.nonzero(classes == c).flatten()[:cols]
        for j in range(cols):
            ax = axes[c][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(members):
                img = images[members[j]].detach().cpu().clamp(0, 1)
                if img.shape[0] == 1:
                    ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(img.permute(1, 2, 0).numpy())
        axes[c][0].set_ylabel(class_names[c], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
