"""Running `ltdd` in-process and checking that a refusal left everything as it was."""

from __future__ import annotations

from pathlib import Path

from ltdd.cli import main
from ltdd.io import sha256_file


def cli(capsys, *argv) -> tuple[int, list[str]]:
    """Run `ltdd argv` in-process; the exit code and the stderr lines ltdd printed itself."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if line.startswith("ltdd")]


def assert_refused(capsys, argv, message: str, untouched: Path | None = None) -> None:
    before = snapshot(untouched) if untouched is not None else None
    code, lines = cli(capsys, *argv)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("ltdd: error:"), lines
    assert message in lines[0], lines
    if untouched is not None:
        assert snapshot(untouched) == before


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) with its sha256."""
    if not folder.exists():
        return {}
    if folder.is_file():
        return {folder.name: sha256_file(folder)}
    return {
        str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
    }
