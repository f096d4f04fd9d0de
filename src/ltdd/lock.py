"""One writer per output directory: an advisory `flock` on `<dir>/.ltdd.lock`.

The kernel drops a `flock` when its holder exits, however it exits (SIGKILL included), so a killed
run never leaves a stale lock behind. The lock file holds the holder's PID so that a refused
second process can name it. Whoever takes the lock deletes the temporary files of atomic
writes that a killed holder left behind. The lock file is removed on release; a process that
opened it just before the removal notices (the path no longer names the file it locked) and
takes the lock again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ltdd.errors import UserError

LOCK_FILE = ".ltdd.lock"


def _holder(path: Path) -> str:
    """The PID recorded in a lock file, or 'unknown' while it is being written."""
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _acquire(path: Path) -> int:
    """Open and lock `path`; returns the descriptor. Raises BlockingIOError when held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file between our open and our lock: retry


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files of atomic writes (`ltdd.io.atomic_path` names them
    `.<name>.<random>.tmp`) that a killed process left under `directory`.

    Only safe while holding the directory's lock: then no other process can be writing one.
    """
    stale = [
        p
        for p in Path(directory).rglob(".*.tmp")
        if p.is_file() and p.name.count(".") >= 3  # .<name>.<random>.tmp, as atomic_path names
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def locked(directory: str | Path, what: str = "output directory") -> Iterator[Path]:
    """Hold `directory` (created if missing) for this process; refuse at once if another holds it.

    A directory this call created and that is still empty at the end is removed again, so a
    refused or failed command leaves nothing behind.
    """
    directory = Path(directory)
    path = directory / LOCK_FILE
    while True:
        created = [p for p in (directory, *directory.parents) if not p.exists()]
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            # pathlib's exist_ok checks twice: mkdir fails (it exists), then is_dir() fails (a
            # releasing holder removed it in between). Only a non-folder in the way is final.
            if os.path.lexists(directory) and not directory.is_dir():
                raise UserError(f"{directory}: exists and is not a directory") from None
            continue
        try:
            fd = _acquire(path)
            break
        except FileNotFoundError:
            continue  # a holder that had created the folder removed it after our mkdir: again
        except BlockingIOError:
            raise UserError(
                f"{directory}: {what} is in use by another ltdd process (PID {_holder(path)}); "
                "wait for it to finish or stop it, or choose another directory"
            ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        remove_stale_temporaries(directory)  # left by a killed holder; nobody else writes now
        yield directory
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        for folder in created:  # innermost first; rmdir only succeeds when nothing was written
            with contextlib.suppress(OSError):
                folder.rmdir()
