"""Issue 12: every misuse ends in one `ltdd: error:` line, exit status 2, nothing written."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import assert_refused, cli
from distill_toy import toy_data
from safetensors.torch import save_file

from ltdd.cli import main
from ltdd.distilled import DistilledSet
from ltdd.evaluate.evaluate import EvalConfig, evaluate_set
from ltdd.evaluate.trainer import TrainConfig
from ltdd.io import save_tensors, sha256_file, write_json

from helpers_formats import py2_pickle

PROC = ["--dataset", "procedural", "--imbalance-factor", "10"]
LTDD = [sys.executable, "-m", "ltdd"]


def env(**extra: str) -> dict:
    """The environment of a subprocess (read at call time: conftest sets LTDD_CACHE)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def good_set(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sets") / "random.safetensors"
    assert main(["baseline", "random", *PROC, "--ipc", "2", "--out", str(path)]) == 0
    return path


# ---- argparse -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv", [["evaluate"], ["baseline", "nearest"], ["data", "--imbalance-factor", "x"], ["bogus"]]
)
def test_argparse_errors_are_one_line(capsys, argv):
    code, lines = cli(capsys, *argv)
    err = capsys.readouterr().err
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ltdd: error: ltdd"), lines
    assert "usage:" not in err


# ---- output paths, checked before any computation --------------------------------------------
OUTPUT_COMMANDS = {
    "data": (["data", *PROC, "--json", "{out}"], False),
    "baseline": (["baseline", "random", *PROC, "--ipc", "2", "--out", "{out}"], False),
    "evaluate": (["evaluate", "{set}", "--epochs", "1", "--seeds", "1", "--json", "{out}"], False),
    "show": (["show", "{set}", "--out", "{out}"], False),
    "experts": (["experts", "--out", "{out}", "data.dataset=procedural"], True),
    "distill": (
        ["distill", "--experts", "{tmp}", "--out", "{out}", "data.dataset=procedural"],
        True,
    ),
    "report": (["report", "{tmp}", "--out", "{out}"], True),
    "run": (["run", "runs_dir={out}", "data.dataset=procedural"], True),
}


@pytest.mark.parametrize("case", ["wrong-kind", "parent-is-file"])
@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_unwritable_output_is_refused_before_any_work(
    tmp_path, capsys, good_set, command, case, monkeypatch
):
    argv, folder = OUTPUT_COMMANDS[command]
    blocker = tmp_path / "blocker"
    if case == "wrong-kind":
        if folder:
            blocker.write_text("a file where a folder should be")
        else:
            blocker.mkdir()
        out, message = blocker, "is not a folder" if folder else "is a folder"
    else:
        blocker.write_text("a file")
        out, message = blocker / "sub" / "out.json", "is not a folder, so it cannot hold"
    for heavy in ("prepare_data", "describe"):  # any computation would fail the test
        monkeypatch.setattr(f"ltdd.commands.{heavy}", lambda *a, **k: pytest.fail("computed"))
    names = {"out": out, "set": good_set, "tmp": tmp_path}
    assert_refused(capsys, [a.format(**names) for a in argv], message, tmp_path)


def _unprivileged() -> list[str]:
    """A command prefix under which permission bits apply (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only for us")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def test_read_only_output_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = subprocess.run(
            [*_unprivileged(), *LTDD, "data", *PROC, "--json", str(ro / "counts.json")],
            capture_output=True,
            text=True,
            env=env(),
        )
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"ltdd: error: {ro}: not writable (permission denied), cannot write {ro}/counts.json"
    ]
    assert list(ro.iterdir()) == []


def test_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, good_set):
    """A file-size limit makes writes fail like a full disk (EFBIG instead of ENOSPC)."""
    out = tmp_path / "set.safetensors"
    shutil.copy(good_set, out)
    before = sha256_file(out)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run(
        [*LTDD, "baseline", "random", *PROC, "--ipc", "20", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env(),
        preexec_fn=limit,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ltdd")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"ltdd: error: {out}: ") and "File too large" in lines[0]
    assert sha256_file(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.safetensors"]  # no temp file


# ---- learning rates ---------------------------------------------------------------------------
@pytest.mark.parametrize("lr", ["-1", "nan", "inf", "0"])
def test_non_positive_or_non_finite_lr_is_refused(tmp_path, capsys, good_set, lr):
    out = tmp_path / "out"
    base = ["baseline", "random", *PROC, "--ipc", "2", "--lr", lr, "--out", out]
    assert_refused(capsys, base, "--lr must be a finite number > 0", tmp_path)
    ev = ["evaluate", good_set, "--epochs", "1", "--seeds", "1", "--lr", lr, "--json", out]
    assert_refused(capsys, ev, "--lr must be a finite number > 0", tmp_path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.lr_img=1e300", "distill.lr_img must be a finite number within float32 range"),
        ("distill.lr_img=.nan", "distill.lr_img must be a finite number"),
        ("distill.width=99999999999999999999999", "distill.width must be an integer of at most"),
        ("distill.seed=-99999999999999999999999", "distill.seed must be an integer of at most"),
    ],
)
def test_config_numbers_beyond_what_tensors_hold_are_refused(tmp_path, capsys, override, message):
    argv = ["distill", "--experts", tmp_path, "--out", tmp_path / "d", override]
    assert_refused(capsys, argv, message, tmp_path)


def test_model_too_large_to_build_is_one_line(tmp_path, capsys, good_set):
    argv = ["evaluate", good_set, "--epochs", "1", "--seeds", "1", "--width", "10000000000"]
    assert_refused(capsys, [*argv, "--json", tmp_path / "e.json"], "cannot build model", tmp_path)


# ---- config files -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["binary", "folder"])
def test_config_file_that_is_binary_or_a_folder(tmp_path, capsys, kind):
    config = tmp_path / "config.yaml"
    if kind == "binary":
        config.write_bytes(b"\x00\x01\xff\xfe\x80binary")
        message = "not a text file"
    else:
        config.mkdir()
        message = "is a folder, not a YAML config file"
    argv = ["run", "--config", config, f"runs_dir={tmp_path / 'runs'}"]
    assert_refused(capsys, argv, message, tmp_path)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_run_name_must_be_one_folder(tmp_path, capsys, name):
    argv = ["run", f"runs_dir={tmp_path / 'runs'}", f"name={name}", "data.dataset=procedural"]
    assert_refused(capsys, argv, "name must name one folder under runs_dir", tmp_path)


# ---- distilled sets: validated before any training ----------------------------------------------
def _variant(good: DistilledSet, case: str) -> tuple[dict, object]:
    """Tensors and metadata of a broken copy of `good` (10 classes of 1×28×28 images)."""
    t = {"images": good.images, "labels": good.labels, "lr": torch.tensor(good.lr)}
    meta: object = {**good.meta, "label_kind": "hard"}
    n = len(good.images)
    if case == "label-too-large":
        t["labels"] = good.labels.clone()
        t["labels"][0] = 10
    elif case == "label-negative":
        t["labels"] = good.labels.clone()
        t["labels"][-1] = -1
    elif case == "soft-k-differs":
        t["labels"] = torch.randn(n, 7)
        meta = {**meta, "label_kind": "soft"}
    elif case == "image-size":
        t["images"] = torch.zeros(n, 1, 32, 32)
    elif case == "channels":
        t["images"] = torch.zeros(n, 3, 28, 28)
    elif case == "no-images":
        t["images"], t["labels"] = torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.int64)
    elif case == "lr-nan":
        t["lr"] = torch.tensor(float("nan"))
    elif case == "lr-negative":
        t["lr"] = torch.tensor(-1.0)
    elif case == "meta-null":
        meta = None
    elif case == "meta-string":
        meta = "a string"
    elif case == "meta-data-5":
        meta = {**meta, "data": 5}
    elif case == "meta-data-bad-key":
        meta = {**meta, "data": {"dataset": "procedural", "imbalance_factor": "abc"}}
    elif case == "meta-beta-abc":
        meta = {**meta, "imbalance_factor": "abc"}
    elif case == "meta-model-string":
        meta = {**meta, "model": "convnet"}
    return t, meta


SET_CASES = {
    "label-too-large": "labels outside 0..9",
    "label-negative": "labels outside 0..9",
    "soft-k-differs": "soft labels have 7 columns",
    "image-size": "images are 1×32×32, the dataset's images are 1×28×28",
    "channels": "images are 3×28×28",
    "no-images": "it holds no images",
    "lr-nan": "lr must be one positive number",
    "lr-negative": "lr must be one positive number",
    "meta-null": "metadata must be a JSON object",
    "meta-string": "metadata must be a JSON object",
    "meta-data-5": "metadata data must be a mapping",
    "meta-data-bad-key": "imbalance_factor must be a number",
    "meta-beta-abc": "metadata imbalance_factor must be a number >= 1",
    "meta-model-string": "metadata model must be a mapping",
}


@pytest.mark.parametrize("command", ["evaluate", "show"])
@pytest.mark.parametrize("case", SET_CASES)
def test_broken_sets_are_refused_before_training(
    tmp_path, capsys, good_set, case, command, monkeypatch
):
    tensors, meta = _variant(DistilledSet.load(good_set), case)
    path = tmp_path / f"{case}.safetensors"
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(path), {"ltdd": json.dumps(meta)}
    )
    monkeypatch.setattr("ltdd.commands.evaluate_set", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / "out" / ("e.json" if command == "evaluate" else "grid.png")
    argv = [command, path, "--out" if command == "show" else "--json", out]
    if command == "evaluate":
        argv += ["--epochs", "1", "--seeds", "1"]
    assert_refused(capsys, argv, SET_CASES[case], tmp_path)


def test_diverging_evaluation_is_reported_in_the_result_and_on_stderr(caplog):
    data = toy_data()
    train = TrainConfig(epochs=2, width=4, depth=1)
    cfg = EvalConfig(train=train, seeds=2, test_profile="balanced")
    images, labels = data.train_images, data.train_labels
    with caplog.at_level("WARNING"):
        broken = evaluate_set(images, labels, 1e30, data, cfg, torch.device("cpu"))
    assert broken["diverged_seeds"] == [0, 1] and "diverged" in broken["warnings"][0]
    assert any("warning: training diverged" in r.getMessage() for r in caplog.records)
    sane = evaluate_set(images, labels, 0.01, data, cfg, torch.device("cpu"))
    assert "warnings" not in sane and "diverged_seeds" not in sane


# ---- datasets -----------------------------------------------------------------------------------
def test_beta_leaving_a_class_empty_is_refused(tmp_path, capsys):
    argv = [
        "data",
        "--dataset",
        "procedural",
        "--imbalance-factor",
        "1e9",
        "--json",
        tmp_path / "x",
    ]
    assert_refused(capsys, argv, "leaves class 3 with no training image", tmp_path)


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 0}}, "class 'b' has no test image"),
        ({"train": {"a": 2, "b": 2}, "test": {}}, "has no test image"),
        ({"train": {"a": 3}, "test": {"a": 2}}, "classification needs at least two classes"),
    ],
)
def test_unusable_folder_datasets_are_refused(tmp_path, capsys, layout, message):
    root = tmp_path / "tree"
    for split, classes in layout.items():
        (root / split).mkdir(parents=True)
        for name, count in classes.items():
            (root / split / name).mkdir()
            write_folder_tree_images(root / split / name, count)
    argv = ["data", "--dataset", "folder", "--root", root, "--imbalance-factor", "1"]
    assert_refused(capsys, [*argv, "--json", tmp_path / "x.json"], message, tmp_path / "x.json")


def write_folder_tree_images(folder: Path, count: int) -> None:
    from PIL import Image

    for i in range(count):
        Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(folder / f"{i}.png")


class _Huge:
    """Pickles as numpy's array placeholder of 2^50 uint8 elements (what the issue sent)."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (2**50,), b"b"))


def test_cifar_archive_asking_for_a_huge_array_is_refused(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (folder / name).write_bytes(py2_pickle({b"data": _Huge()}))
    argv = ["data", "--dataset", "cifar10", "--root", tmp_path, "--json", tmp_path / "x.json"]
    assert_refused(capsys, argv, "refused array placeholder of shape (1125899906842624,)")


# ---- files honour the umask ---------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        save_tensors(tmp_path / "b.safetensors", {"x": torch.zeros(2)})
    finally:
        os.umask(old)
    for name in ("a.json", "b.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode


# ---- report on run files of the wrong shape ----------------------------------------------
VALID_RUN = {
    "data.json": {
        "dataset": "procedural",
        "imbalance_factor": 10.0,
        "num_classes": 2,
        "class_names": ["a", "b"],
        "train_counts": [10, 1],
        "test_lt_counts": [4, 1],
    },
    "eval/full.json": {
        "balanced": {
            **{
                k: {"mean": 0.5, "std": 0.1}
                for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")
            },
            "per_class_accuracy": [0.5, None],
            "groups": {"head": {"accuracy": {"mean": 0.5, "std": 0.0}}, "tail": None},
        }
    },
}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("data.json", "null", "data.json: unexpected content (the file must be a mapping"),
        ("data.json", '{"dataset": 5}', "dataset must be a string"),
        ("data.json", '{"imbalance_factor": "abc"}', "imbalance_factor must be a finite number"),
        ("eval/full.json", '"a string"', "full.json: unexpected content"),
        ("eval/full.json", '{"balanced": 5}', "balanced must be a mapping"),
        ("eval/full.json", '{"balanced": {"accuracy": []}}', "balanced.accuracy must be a mapping"),
        ("timings.json", "[1, 2]", "timings.json: unexpected content"),
        ("timings.json", '{"data": {"wall_s": "x"}}', "data.wall_s must be a finite number"),
        ("config.yaml", "methods: 5", "config.yaml: unexpected content (methods must be a list"),
        ("config.yaml", "- a\n- b\n", "a config must be a mapping"),
        ("distill/full/metrics.jsonl", '{"iteration": "x"}\n', "iteration must be a finite"),
        ("distill/full/metrics.jsonl", "[1]\n", "metrics.jsonl:1: unexpected content"),
        (
            "distill/full/metrics.jsonl",
            '{"iteration": 1, "phase_losses": [1]}\n{"iteration": 2, "phase_losses": [1, 2]}\n',
            "lines list different numbers of phase losses",
        ),
    ],
)
def test_report_on_run_files_of_the_wrong_shape(tmp_path, capsys, name, content, message):
    run = tmp_path / "run"
    for file, obj in VALID_RUN.items():
        (run / file).parent.mkdir(parents=True, exist_ok=True)
        (run / file).write_text(json.dumps(obj))
    patch = json.loads(content) if name.endswith(".json") and content.startswith("{") else None
    if isinstance(patch, dict) and name in VALID_RUN and set(patch) <= set(VALID_RUN[name]):
        content = json.dumps({**VALID_RUN[name], **patch})
    (run / name).parent.mkdir(parents=True, exist_ok=True)
    (run / name).write_text(content)
    assert_refused(capsys, ["report", run], message, run)


def test_report_reads_metrics_that_open_with_the_iteration_0_validation_line(tmp_path, capsys):
    """A distillation with `eval_every` writes iteration 0's validation accuracy first, a line
    without phase losses; the report must not take it for a different number of phases."""
    run = tmp_path / "run"
    for file, obj in VALID_RUN.items():
        (run / file).parent.mkdir(parents=True, exist_ok=True)
        (run / file).write_text(json.dumps(obj))
    lines = [
        {"iteration": 0, "lr": 0.01, "val_balanced_accuracy": 0.5},
        *({"iteration": i, "loss": 0.9, "phase_losses": [0.9]} for i in (1, 2)),
    ]
    (run / "distill" / "full").mkdir(parents=True)
    (run / "distill" / "full" / "metrics.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    code, errors = cli(capsys, "report", run)
    assert code == 0 and not errors, errors


def test_no_space_left_while_writing_json_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno

    from ltdd.errors import UserError

    out = tmp_path / "result.json"
    write_json(out, {"good": True})

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(UserError, match="result.json: not written \\(No space left on device\\)"):
        write_json(out, {"good": False})
    monkeypatch.undo()
    assert json.loads(out.read_text()) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
