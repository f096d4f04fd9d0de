"""The report's "Distillation diagnostics" section: did the optimisation move the set?"""

from __future__ import annotations

from pathlib import Path

from ltdd.distill.diagnostics import read_metrics, summarize
from ltdd.io import load_tensors, read_json
from ltdd.report.tables import markdown_table


def _nums(values: list[float] | None, fmt: str) -> str:
    return "–" if not values else ", ".join(format(v, fmt) for v in values)


def diagnostics_rows(run_dir: Path, methods: list[str]) -> list[list[str]]:
    """One row per distillation method of the run that has a metrics file."""
    rows = []
    for method in methods:
        folder = Path(run_dir) / "distill" / method
        if not (folder / "metrics.jsonl").is_file():
            continue
        init = None
        if (folder / "initial.safetensors").is_file():
            init = load_tensors(folder / "initial.safetensors")[1].get("init")
        s = summarize(read_metrics(folder / "metrics.jsonl"), init)
        gain_file = Path(run_dir) / "eval" / "init" / f"{method}.json"
        gain = read_json(gain_file).get("distillation_gain") if gain_file.is_file() else None
        change = s["image_change_final"]
        val = s["validation"]
        record = s["init"] or {}
        rows.append(
            [
                method,
                "–" if gain is None else f"{gain['mean']:+.1f} ± {gain['std']:.1f}",
                _nums(s["alpha"][-1][1] if s["alpha"] else None, ".4g"),
                _nums(s["phase_loss_last_over_first"], ".3f"),
                "–" if not change else f"{min(change):.3f} / {max(change):.3f}",
                " → ".join(f"{100 * v:.1f}" for _, v in val) or "–",
                _nums(record.get("real_per_class"), "d"),
                _nums(record.get("noise_classes"), "d") if record else "–",
            ]
        )
    return rows


def diagnostics_section(run_dir: Path, methods: list[str]) -> list[str]:
    """Markdown blocks of the section (empty when no distillation ran)."""
    rows = diagnostics_rows(run_dir, methods)
    if not rows:
        return []
    return [
        "## Distillation diagnostics",
        "Gain = balanced test accuracy of the final set minus that of its own iteration-0 set "
        "(same evaluation, same seeds; points, mean ± std of the per-seed differences). α: the "
        "learned learning rate(s) at the end (one per phase with `lr_per_phase`). Loss: each "
        "phase's matching loss at the last iteration over its first. Image change: "
        "‖X_t − X_0‖/‖X_0‖ per class, min / max over classes. Validation: balanced accuracy on "
        "the split carved from the training set, from iteration 0 on. Real images found per "
        "class, and the classes filled with noise, at initialisation.",
        markdown_table(
            [
                "method",
                "gain (pp)",
                "α final",
                "loss last/first",
                "image change",
                "validation (%)",
                "real per class",
                "noise classes",
            ],
            rows,
        ),
    ]
