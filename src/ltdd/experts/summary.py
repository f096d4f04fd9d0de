"""`summary_table`: each expert's balanced test accuracy and head / medium / tail accuracy."""

from __future__ import annotations

from ltdd.experts.store import TrajectoryStore

_GROUPS = ("head", "medium", "tail")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def summary_table(store: TrajectoryStore) -> str:
    """A Markdown table, one row per expert plus the mean, from the manifest's test metrics."""
    lines = [
        f"{store.kind} experts in {store.directory} (balanced test set, accuracy %)",
        "",
        "| expert | accuracy | head | medium | tail |",
        "|---:|---:|---:|---:|---:|",
    ]
    columns: list[list[float | None]] = [[] for _ in range(4)]
    for entry in store.manifest["experts"]:
        metrics = entry["metrics"]
        values = [metrics["accuracy"]] + [
            (metrics["groups"].get(g) or {}).get("accuracy") for g in _GROUPS
        ]
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        lines.append(f"| {entry['index']} | " + " | ".join(_pct(v) for v in values) + " |")
    means = [
        sum(v for v in c if v is not None) / len(c) if all(v is not None for v in c) else None
        for c in columns
    ]
    lines.append("| mean | " + " | ".join(_pct(v) for v in means) + " |")
    return "\n".join(lines)
