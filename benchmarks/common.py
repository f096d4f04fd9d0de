"""Shared bits of the benchmark scripts: machine description and result files."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from ltdd.data.dataset import DataConfig, LongTailedData, prepare_data

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """One line naming the machine, torch build and thread count."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    return f"{device}; torch {torch.__version__}; {torch.get_num_threads()} threads"


def command() -> str:
    """This script's command line as typed from the repository root."""
    argv = [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]
    return ".venv/bin/python " + " ".join(shlex.quote(a) for a in argv)


def provenance(machine_name: str | None = None) -> dict:
    """The `command`, `machine` and `date` fields of a results JSON."""
    return {
        "command": command(),
        "machine": machine_name or machine(),
        "date": datetime.date.today().isoformat(),
    }


def header(title: str, machine_name: str | None = None) -> str:
    """Markdown header: title, command, machine (default: this one), date."""
    fields = provenance(machine_name)
    return (
        f"# {title}\n\n"
        f"- command: `{fields['command']}`\n"
        f"- machine: {fields['machine']}\n"
        f"- date: {fields['date']}\n"
    )


def pct(summary: dict | None) -> str:
    """`mean ± std` in percent of a {mean, std} summary, or `absent`."""
    if summary is None:
        return "absent"
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


def swap_validation(data: LongTailedData, split: DataConfig | None) -> LongTailedData:
    """`data` with its validation split replaced by the one `split` selects (e.g. `val_from:
    held-out, val_per_class: 500`), preprocessed as `data`; the training images, which the run's
    experts and sets were made from, stay as they are. `split` None: `data` itself."""
    if split is None:
        return data
    other = prepare_data(split, data.preprocessing)
    return dataclasses.replace(data, val_images=other.val_images, val_labels=other.val_labels)
