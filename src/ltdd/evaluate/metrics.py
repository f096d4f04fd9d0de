"""Classification metrics for long-tailed evaluation, computed from predictions.

Head / medium / tail groups come from the long-tailed *training* counts on a log scale: with
n_max and n_min the largest and smallest class counts, a class is
  head   if n_c >= n_max^(2/3) * n_min^(1/3),
  tail   if n_c <  n_max^(1/3) * n_min^(2/3),
  medium otherwise,
i.e. the thirds of log(n_c) between log(n_min) and log(n_max). With the exponential profile and
C = 10 this gives head = classes 0-2, medium = 3-5, tail = 6-9. On a balanced set every class is
head and the other groups are absent (reported as None, never as 0).
"""

from __future__ import annotations

import numpy as np

GROUPS = ("head", "medium", "tail")


def class_groups(train_counts: list[int]) -> dict[str, list[int]]:
    """Split class ids into head / medium / tail by their training counts (see module docstring)."""
    counts = np.asarray(train_counts, dtype=np.float64)
    log_max, log_min = np.log(counts.max()), np.log(counts.min())
    upper = np.exp(log_max * 2 / 3 + log_min / 3)
    lower = np.exp(log_max / 3 + log_min * 2 / 3)
    groups: dict[str, list[int]] = {g: [] for g in GROUPS}
    for c, n in enumerate(counts):
        if n >= upper * (1 - 1e-12):
            groups["head"].append(c)
        elif n < lower * (1 - 1e-12):
            groups["tail"].append(c)
        else:
            groups["medium"].append(c)
    return groups


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts[t, p] of samples with true class t predicted as p."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, train_counts: list[int]
) -> dict:
    """Accuracy, per-class accuracy, macro precision/recall/F1 and head/medium/tail accuracy.

    Macro averages run over all `num_classes` labels with 0 for undefined ratios (scikit-learn's
    `average="macro", zero_division=0`). A class absent from `y_true` has per-class accuracy None.
    Group accuracy is the mean per-class accuracy of the group's classes present in `y_true`.
    """
    matrix = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix)
    precision = _safe_ratio(hits, predicted)
    recall = _safe_ratio(hits, support)
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    per_class = [float(r) if s > 0 else None for r, s in zip(recall, support, strict=True)]
    groups = {}
    for name, members in class_groups(train_counts).items():
        present = [per_class[c] for c in members if per_class[c] is not None]
        groups[name] = (
            {"classes": members, "accuracy": float(np.mean(present))} if present else None
        )
    return {
        "accuracy": float(hits.sum() / max(support.sum(), 1)),
        "per_class_accuracy": per_class,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "groups": groups,
    }
