"""Bad input ends with exit status 2, one line on stderr, and no partial output."""

import json
import subprocess
import sys

import pytest
import torch

from ltdd.cli import main
from ltdd.distilled import DistilledSet
from ltdd.io import save_tensors

PROC = ["--dataset", "procedural", "--imbalance-factor", "10"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if line.startswith("ltdd:")]


@pytest.fixture(scope="module")
def random_set(tmp_path_factory):
    path = tmp_path_factory.mktemp("sets") / "random.safetensors"
    assert main(["baseline", "random", *PROC, "--ipc", "3", "--out", str(path)]) == 0
    return path


def test_random_baseline_file_follows_the_contract(random_set):
    s = DistilledSet.load(random_set)
    assert s.images.shape == (30, 1, 28, 28) and s.images.dtype == torch.float32
    assert s.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert s.lr == pytest.approx(0.01)
    for key in ("dataset", "imbalance_factor", "ipc", "method", "label_kind"):
        assert key in s.meta
    assert s.meta["label_kind"] == "hard" and s.meta["method"] == "random"


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["data", "--dataset", "cifar10", "--root", "/nonexistent/x", "--json", "{out}"],
            "/nonexistent/x",
        ),
        (["data", "--dataset", "imagenet-21k", "--json", "{out}"], "unknown dataset"),
        (["data", *PROC[:2], "--imbalance-factor", "0.5", "--json", "{out}"], ">= 1"),
        (
            ["baseline", "random", *PROC, "--ipc", "0", "--out", "{out}"],
            "--ipc must be a positive number",
        ),
        (
            ["baseline", "random", *PROC, "--ipc", "-3", "--out", "{out}"],
            "--ipc must be a positive number",
        ),
        (
            [
                "baseline",
                "random",
                *PROC[:2],
                "--imbalance-factor",
                "500",
                "--ipc",
                "50",
                "--tail-policy",
                "error",
                "--out",
                "{out}",
            ],
            "fewer than ipc=50",
        ),
        (["evaluate", "{missing}", "--json", "{out}"], "no such file"),
        (["evaluate", "{corrupt}", "--json", "{out}"], "not a readable safetensors file"),
        (["evaluate", "{truncated}", "--json", "{out}"], "not a readable safetensors file"),
        (["evaluate", "{wrong}", "--json", "{out}"], "not a valid ltdd distilled set"),
        (
            ["evaluate", "{random}", "--epochs", "1", "--seeds", "0", "--json", "{out}"],
            "--seeds must be positive",
        ),
        (["show", "{corrupt}", "--out", "{out}"], "not a readable safetensors file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, random_set, argv, message):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(random_set.read_bytes()[:-100])
    wrong = tmp_path / "wrong.safetensors"
    s = DistilledSet.load(random_set)
    s.lr = -1.0
    save_tensors(wrong, {"images": s.images, "labels": s.labels, "lr": torch.tensor(-1.0)}, s.meta)
    out = tmp_path / "out" / "result.file"
    names = {
        "out": out,
        "missing": tmp_path / "missing.safetensors",
        "corrupt": corrupt,
        "truncated": truncated,
        "wrong": wrong,
        "random": random_set,
    }
    code, lines = run_cli(capsys, *[a.format(**names) for a in argv])
    assert code == 2
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_user_errors_print_no_traceback_from_the_installed_command(tmp_path):
    ltdd = [sys.executable, "-m", "ltdd"]
    proc = subprocess.run(
        [*ltdd, "data", *PROC[:2], "--imbalance-factor", "0.5", "--json", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ltdd: error: imbalance_factor must be >= 1, got 0.5"


def test_every_subcommand_has_help(capsys):
    for command in ("data", "baseline", "evaluate", "show"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "usage: ltdd " + command in capsys.readouterr().out


def test_evaluate_on_another_architecture_drops_the_width_it_was_made_for(tmp_path, random_set):
    s = DistilledSet.load(random_set)
    s.meta["model"] = {"name": "convnet", "width": 8}
    made = s.save(tmp_path / "made.safetensors")
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(made), "--epochs", "0", "--seeds", "1", "--test-profile", "balanced"]
    assert main([*argv, "--arch", "alexnet", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["train"]["model"] == "alexnet"
    assert main([*argv, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["train"]["width"] == 8
