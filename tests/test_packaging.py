"""`python -m build` makes a wheel that ships py.typed and installs, without fetching anything,
into a fresh venv that already has ltdd's dependencies (torch included), then imports there."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_installs_beside_an_existing_torch_and_imports(tmp_path):
    pytest.importorskip("build")
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    src = tmp_path / "src"  # build from a copy: no build/ or egg-info left in the checkout
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "runs", "*.egg-info", "build", "dist", "__pycache__"
        ),
    )
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("ltdd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ltdd/py.typed" in names and "ltdd/api.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the dependencies (torch, numpy, ...) already installed: this environment's packages, less
    # its own ltdd, seen through a folder of links named by a .pth file
    existing = tmp_path / "existing"
    existing.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("ltdd", "__editable__")):
            (existing / entry.name).symlink_to(entry)
    Path(purelib, "existing.pth").write_text(f"{existing}\n")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-index",
            "--no-cache-dir",
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr  # --no-index: torch cannot be re-installed
    assert "Requirement already satisfied: torch>=" in install.stdout
    assert install.stdout.strip().splitlines()[-1] == "Successfully installed ltdd-0.1.0"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    smoke = subprocess.run(
        [python, "-c", "import ltdd; print(ltdd.__file__); print(len(ltdd.__all__))"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert smoke[0].startswith(purelib) and int(smoke[1]) > 10
    help_text = subprocess.run(
        [venv / "bin" / "ltdd", "export", "--help"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "usage: ltdd export" in help_text
