"""Figures of a report: distilled images across β, class-wise accuracy, accuracy vs β, losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure  # not pyplot: the user's backend stays as it is

from ltdd.io import atomic_path


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def mosaic(
    pictures: torch.Tensor, classes: torch.Tensor, num_classes: int, cols: int
) -> np.ndarray:
    """One image (H·C rows × W·cols) with a row of up to `cols` pictures per class."""
    _, channels, h, w = pictures.shape
    canvas = np.ones((num_classes * (h + 1), cols * (w + 1), 3), dtype=np.float32)
    for c in range(num_classes):
        members = torch.nonzero(classes == c).flatten()[:cols]
        for j, i in enumerate(members.tolist()):
            img = pictures[i].clamp(0, 1).permute(1, 2, 0).numpy()
            if channels == 1:
                img = np.repeat(img, 3, axis=2)
            canvas[c * (h + 1) : c * (h + 1) + h, j * (w + 1) : j * (w + 1) + w] = img
    return canvas


def image_grid_figure(panels: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """Supplementary Figure 8: rows = methods, columns = runs (e.g. β), one mosaic each."""
    methods = list(panels)
    runs = list(dict.fromkeys(r for per in panels.values() for r in per))
    fig = Figure(figsize=(3.2 * len(runs) + 0.5, 3.4 * len(methods)))
    axes = fig.subplots(len(methods), len(runs), squeeze=False)
    for i, method in enumerate(methods):
        for j, run in enumerate(runs):
            ax = axes[i][j]
            ax.axis("off")
            if run in panels[method]:
                ax.imshow(panels[method][run], interpolation="nearest")
            ax.set_title(f"{method} · {run}", fontsize=9)
    _save(fig, path)


def classwise_figure(
    per_class: dict[str, list], class_names: list[str], path: Path, title: str
) -> None:
    """Grouped bars of per-class accuracy, one colour per method."""
    fig = Figure(figsize=(max(6, 0.9 * len(class_names) + 2), 3.6))
    ax = fig.subplots()
    width = 0.8 / max(1, len(per_class))
    x = np.arange(len(class_names))
    for k, (method, accs) in enumerate(per_class.items()):
        values = [np.nan if a is None else 100 * a for a in accs]
        ax.bar(x + k * width - 0.4 + width / 2, values, width, label=method)
    ax.set_xticks(x, [f"{c}\n{n[:9]}" for c, n in enumerate(class_names)], fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=min(6, len(per_class)))
    _save(fig, path)


def accuracy_vs_beta_figure(
    points: dict[str, list[tuple[float, float, float]]], path: Path
) -> None:
    """Balanced accuracy (mean ± std) against the imbalance factor, one line per method."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for method, pts in points.items():
        pts = sorted(pts)
        betas, means, stds = (np.array(v) for v in zip(*pts, strict=True))
        ax.errorbar(betas, 100 * means, yerr=100 * stds, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("imbalance factor β")
    ax.set_ylabel("balanced accuracy (%)")
    ax.legend(fontsize=7)
    _save(fig, path)


def loss_curves_figure(metrics: dict[str, Path], path: Path) -> None:
    """Matching loss per outer iteration (each phase) of every distillation method."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for method, file in metrics.items():
        rows = [json.loads(line) for line in file.read_text().splitlines() if line]
        rows = [r for r in rows if "phase_losses" in r]  # iteration 0 holds validation only
        if not rows:
            continue
        its = [r["iteration"] for r in rows]
        phases = len(rows[0]["phase_losses"])
        for p in range(phases):
            ax.plot(its, [r["phase_losses"][p] for r in rows], label=f"{method} phase {p + 1}")
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("normalised matching loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    _save(fig, path)
