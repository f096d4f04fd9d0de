"""Stage records: a stage is skipped when its record's hash matches and its outputs exist.

Each stage's hash covers its own configuration and the hashes of the stages it reads, so a
changed key recomputes exactly the stages downstream of it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ltdd.errors import UserError
from ltdd.io import read_json, write_json


def stage_hash(*parts: Any) -> str:
    """sha256 of the canonical JSON of `parts` (dicts, lists, strings, numbers)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def is_current(record_path: Path, key: str) -> bool:
    """True when the stage record exists, names `key`, and every output it lists exists."""
    if not record_path.is_file():
        return False
    try:
        record = read_json(record_path)
    except UserError:
        return False
    outputs = [record_path.parent / name for name in record.get("outputs", [])]
    return record.get("hash") == key and all(p.exists() for p in outputs)


def write_record(record_path: Path, key: str, outputs: list[str], **extra: Any) -> None:
    """Mark a stage done: its hash, the outputs (relative to the record's folder) and extras."""
    write_json(record_path, {"hash": key, "outputs": outputs, **extra})


def read_record(record_path: Path) -> dict:
    return read_json(record_path)
