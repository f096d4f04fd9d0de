"""Shared bits of the benchmark scripts: machine description and result files."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """One line naming the machine, torch build and thread count."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    return f"{device}; torch {torch.__version__}; {torch.get_num_threads()} threads"


def header(title: str, machine_name: str | None = None) -> str:
    """Markdown header: title, command, machine (default: this one), date."""
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    return (
        f"# {title}\n\n"
        f"- command: `.venv/bin/python {command}`\n"
        f"- machine: {machine_name or machine()}\n"
        f"- date: {datetime.date.today().isoformat()}\n"
    )


def pct(summary: dict | None) -> str:
    """`mean ± std` in percent of a {mean, std} summary, or `absent`."""
    if summary is None:
        return "absent"
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"
