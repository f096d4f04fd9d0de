"""Markdown tables of a run's evaluation files (each number is read from its JSON)."""

from __future__ import annotations

GROUPS = ("head", "medium", "tail")


def pct(summary: dict | None) -> str:
    """`mean ± std` in percent of a {mean, std} summary; `–` when absent."""
    if summary is None:
        return "–"
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


def frac(summary: dict | None) -> str:
    """`mean ± std` of a fraction-valued {mean, std} summary, 3 decimals."""
    if summary is None:
        return "–"
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def group(result: dict, name: str) -> dict | None:
    entry = result["groups"].get(name)
    return None if entry is None else entry["accuracy"]


def balanced_table(evals: dict[str, dict]) -> str:
    """Balanced test set: accuracy, head/medium/tail, macro-F1 per method."""
    rows = []
    for method, ev in evals.items():
        b = ev["balanced"]
        rows.append(
            [method, pct(b["accuracy"])] + [pct(group(b, g)) for g in GROUPS] + [pct(b["macro_f1"])]
        )
    return markdown_table(["method", "accuracy", "head", "medium", "tail", "macro-F1"], rows)


def long_tailed_table(evals: dict[str, dict]) -> str:
    """Supplementary Table 6: long-tailed test set accuracy, precision, recall, F1."""
    rows = []
    for method, ev in evals.items():
        lt = ev.get("long_tailed")
        if lt is None:
            continue
        rows.append(
            [
                method,
                pct(lt["accuracy"]),
                frac(lt["macro_precision"]),
                frac(lt["macro_recall"]),
                frac(lt["macro_f1"]),
                pct(ev["balanced"]["accuracy"]) if "balanced" in ev else "–",
            ]
        )
    return markdown_table(
        [
            "method",
            "LT accuracy",
            "macro precision",
            "macro recall",
            "macro F1",
            "balanced accuracy",
        ],
        rows,
    )


def classwise_table(evals: dict[str, dict], profile: str, class_names: list[str]) -> str:
    """Supplementary Table 7: per-class accuracy (%) per method."""
    rows = []
    for method, ev in evals.items():
        if profile not in ev:
            continue
        per_class = ev[profile]["per_class_accuracy"]
        rows.append([method] + ["–" if a is None else f"{100 * a:.1f}" for a in per_class])
    header = ["method"] + [f"{c}: {n}" for c, n in enumerate(class_names)]
    return markdown_table(header, rows)


def ddranking_table(evals: dict[str, dict]) -> str:
    """Supplementary Table 8: HLR (lower is better), IOR and LRS (higher is better)."""
    rows = []
    for method, ev in evals.items():
        dd = ev.get("ddranking")
        if not dd:
            continue
        rows.append(
            [method, pct(dd["hlr"]), pct(dd["ior"]), frac(dd["lrs"]), pct(dd["syn_hard_accuracy"])]
        )
    return markdown_table(
        ["method", "HLR (pp) ↓", "IOR (pp) ↑", "LRS ↑", "accuracy with hard labels"], rows
    )


def cost_table(timings: dict[str, dict]) -> str:
    """Supplementary Table 9: wall-clock, CPU-/GPU-hours and peak memory per stage."""
    rows = []
    for stage, t in timings.items():
        if not t:
            continue
        gpu = t.get("peak_gpu_mb")
        rows.append(
            [
                stage,
                f"{t['wall_s']:.1f}",
                f"{t['cpu_hours']:.4f}",
                f"{t.get('gpu_hours', 0.0):.4f}",
                f"{t['peak_rss_mb']:.0f}",
                "–" if gpu is None else f"{gpu:.0f}",
                "reused" if t.get("reused") else "computed",
            ]
        )
    return markdown_table(
        ["stage", "wall s", "CPU-hours", "GPU-hours", "peak RSS MB", "peak GPU MB", "this run"],
        rows,
    )


def cross_arch_table(evals: dict[str, dict], cross: dict[str, dict[str, dict]]) -> str:
    """Balanced accuracy of each set on every evaluation network."""
    archs = sorted({a for per in cross.values() for a in per})
    rows = []
    for method, ev in evals.items():
        row = [method, pct(ev["balanced"]["accuracy"])]
        row += [
            pct(cross.get(method, {}).get(a, {}).get("balanced", {}).get("accuracy")) for a in archs
        ]
        rows.append(row)
    return markdown_table(["method", "distillation network"] + archs, rows)
