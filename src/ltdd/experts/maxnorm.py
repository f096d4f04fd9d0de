"""MaxNorm weight balancing for classifier rows (reference-pipeline §4.4).

The threshold is fixed at the first projection: τ = min_j r_j + t·(max_j r_j − min_j r_j) over
the row norms r_j of the classifier weight; every later projection rescales rows longer than τ
to norm τ. The bias is never projected.
"""

from __future__ import annotations

from torch import Tensor


def row_threshold(weight: Tensor, thresh: float) -> Tensor:
    """τ (a scalar tensor) from the row norms of a (C, F) classifier weight."""
    norms = weight.norm(dim=1)
    return norms.min() + thresh * (norms.max() - norms.min())


def project_rows(weight: Tensor, tau: Tensor) -> Tensor:
    """Rows of `weight` with norm above τ rescaled to norm τ; the others unchanged."""
    norms = weight.norm(dim=1, keepdim=True)
    return weight / (norms / tau).clamp(min=1.0)
