"""sha256 of large files, computed once per version of the file and remembered.

Records live under `$LTDD_CACHE/hashes/` (default `~/.cache/ltdd/hashes/`), one small JSON per
file, keyed by the file's absolute path and checked against its size, inode, mtime and ctime.
ctime is set by the kernel on every change and cannot be set back by a user, so any rewrite of
the file (even one that restores size and mtime) makes the record stale and the file is hashed
again. Deleting the folder only costs time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from ltdd.data.sources.cache import cache_root
from ltdd.io import sha256_file, write_json

log = logging.getLogger(__name__)


def _record_path(path: Path) -> Path:
    key = hashlib.sha256(str(path).encode()).hexdigest()[:32]
    return cache_root() / "hashes" / f"{key}.json"


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def remembered_sha256(path: str | Path) -> str:
    """The file's sha256: from its record when the file is unchanged, else hashed and recorded."""
    path = Path(path).resolve()
    record_path = _record_path(path)
    signature = _signature(path)
    try:
        record = json.loads(record_path.read_text())
        if record["path"] == str(path) and record["stat"] == signature:
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_file(path)
    if _signature(path) == signature:  # unchanged while it was hashed
        try:
            write_json(record_path, {"path": str(path), "stat": signature, "sha256": digest})
        except OSError as exc:
            log.debug("could not record the sha256 of %s (%s)", path, exc)
    return digest
