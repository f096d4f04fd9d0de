"""`ltdd run` killed with SIGKILL at several points, then rerun, ends with the files of a run
that was never interrupted (issue 12).

The kill points are deterministic: `LTDD_KILL_AT_WRITE=PATTERN[:N]` (ltdd.faults) makes the
process SIGKILL itself at the N-th atomic write whose path matches PATTERN, with the temporary
file complete and not yet renamed. Each kill below is one such point, in pipeline order, and each
later run starts from what the killed one left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ltdd.io import sha256_file

from helpers_formats import write_folder_tree

CONFIG = [
    "runs_dir=runs",
    "name=x",
    "ipc=2",
    "methods=[random, mtt]",
    "share_experts=true",
    "data.dataset=folder",
    "data.imbalance_factor=2",
    "experts.representation={num_experts: 2, vectorize: 1, epochs: 2, width: 4, depth: 1,"
    " batch_size: 8}",
    "distill.mtt={iterations: 3, checkpoint_every: 1, width: 4, depth: 1,"
    " phase1: {syn_steps: 2, max_start_epoch: 1}}",
    "evaluate.seeds=1",
    "evaluate.train={epochs: 2, width: 4, depth: 1}",
    "evaluate.full_epochs=1",
    "evaluate.ddranking=false",
]
KILLS = [  # (where, pattern): the stages of the pipeline, in the order they run
    ("inside experts (epoch 1 of expert 0)", "*/.partial/experts_0000-0000/epoch_0001.safetensors"),
    ("while writing a file (an expert)", "*/experts/representation/expert_0001.safetensors"),
    ("inside evaluation (the full-data one)", "*/eval/full.json"),
    ("inside distillation (its 2nd checkpoint)", "*/distill/mtt/checkpoint.safetensors:2"),
]
# Files that record wall-clock time or resources (not results): compared without those fields.
TIMED = ("timings.json", "report.md")


# One interpreter imports ltdd once and forks a child per run (a fresh import costs seconds on a
# loaded machine; the parent runs no torch op, so forking it is safe).
FORK_RUNNER = """
import json, os, sys
from pathlib import Path
from ltdd.cli import main
results = []
for job in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        os.chdir(job["cwd"])
        if job["kill_at"]:
            os.environ["LTDD_KILL_AT_WRITE"] = job["kill_at"]
        os._exit(main(job["argv"]))
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    left = sorted(str(p.relative_to(job["cwd"])) for p in Path(job["cwd"]).rglob("*"))
    results.append([code, left])
print(json.dumps(results))
"""


def ltdd_runs(jobs: list[tuple[Path, str | None]], root: Path) -> list[tuple[int, list[str]]]:
    """Run `ltdd run` once per (cwd, kill pattern), in order: each one's exit code (-9 = killed)
    and the paths it left under its cwd."""
    argv = ["run", *CONFIG, f"data.root={root}", "--device", "cpu"]
    spec = [{"cwd": str(cwd), "kill_at": kill, "argv": argv} for cwd, kill in jobs]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("LTDD_KILL_AT_WRITE", None)
    proc = subprocess.run(
        [sys.executable, "-c", FORK_RUNNER, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def outputs(run_dir: Path) -> dict[str, str]:
    """Every file of the run with its sha256; metrics and stage records without their timings."""
    found = {}
    for path in sorted(run_dir.rglob("*")):
        name = str(path.relative_to(run_dir))
        if not path.is_file() or path.name in TIMED or path.parent.name == "report":
            continue
        if path.name == "metrics.jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            found[name] = json.dumps([{**r, "seconds": None} for r in rows])
        elif path.name.endswith("stage.json"):
            found[name] = json.loads(path.read_text())["hash"]
        else:
            found[name] = sha256_file(path)
    return found


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    root = tmp_path / "tree"
    write_folder_tree(root, ["a", "b", "c"], n_train=12, n_test=4, size=(8, 8), gray=True)
    reference, faulted = tmp_path / "reference", tmp_path / "faulted"
    reference.mkdir()
    faulted.mkdir()
    jobs = [(reference, None)] + [(faulted, pattern) for _, pattern in KILLS] + [(faulted, None)]
    results = ltdd_runs(jobs, root)
    codes = [code for code, _ in results]
    assert codes == [0] + [-signal.SIGKILL] * len(KILLS) + [0], codes
    left = [set(files) for _, files in results[1:-1]]  # what each killed run left behind
    assert "runs/x/.ltdd.lock" in set.intersection(*left)  # held when killed, never stuck
    assert any(".partial/experts_0000-0000/.epoch_0001" in f for f in left[0])  # mid-write
    assert "runs/x/experts/representation/expert_0000.safetensors" in left[1]
    assert "runs/x/experts/representation/expert_0001.safetensors" not in left[1]
    assert "runs/x/eval/full.json" not in left[2]
    assert "runs/x/distill/mtt/checkpoint.safetensors" in left[3]
    assert "runs/x/distill/mtt/distilled.safetensors" not in left[3]
    want, got = outputs(reference / "runs" / "x"), outputs(faulted / "runs" / "x")
    assert got == want
    assert "distill/mtt/distilled.safetensors" in got and "eval/mtt.json" in got
    leftovers = [p.name for p in (faulted / "runs").rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # no lock, no temporary file, no .partial folder
    assert (faulted / "runs" / "x" / "report" / "report.md").is_file()
