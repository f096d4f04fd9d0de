"""`jobs` > 1: the stages after the experts in worker processes give the serial run's files."""

import pytest
import torch
from test_pipeline import BASE

from ltdd.config import load_config
from ltdd.errors import UserError
from ltdd.io import read_json
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.parallel import plan
from ltdd.pipeline.run import Run


def config(*extra: str) -> RunConfig:
    return load_config(RunConfig, None, [*BASE, *extra])


def tasks_of(*extra: str) -> dict:
    return {t.name: t for t in plan(Run(config(*extra), progress=False))}


def test_plan_orders_the_longest_chain_first_and_waits_for_what_each_task_reads():
    tasks = tasks_of("methods=[random, herding, mtt, ltdd]")
    assert list(tasks)[:4] == [
        "experts/representation",
        "experts/classifier",
        "set/ltdd",
        "set/mtt",
    ]
    assert tasks["experts/representation"].needs == ()
    assert tasks["experts/classifier"].needs == ("experts/representation",)
    assert tasks["set/ltdd"].needs == ("experts/representation", "experts/classifier")
    assert tasks["set/mtt"].needs == ("experts/representation",)  # share_experts
    assert tasks["set/random"].needs == ()
    assert tasks["eval/ltdd"].needs == ("set/ltdd", "eval/full")
    # the hard-label baselines share their DD-Ranking random-subset networks: one task
    assert tasks["eval/random+herding"].needs == ("set/random", "set/herding", "eval/full")
    assert tasks["eval/random+herding"].methods == ("random", "herding")
    assert tasks_of("evaluate.ddranking=false")["eval/ltdd"].needs == ("set/ltdd",)
    assert "eval/full_balanced" in tasks_of("evaluate.full_balanced=true")
    assert "experts/classifier" not in tasks_of("methods=[random, mtt]")


def test_two_jobs_write_the_serial_runs_sets_and_results(tmp_path):
    torch.set_num_threads(1)
    serial = Run(config(f"runs_dir={tmp_path / 'serial'}"), progress=False)
    serial.run()
    parallel = Run(config(f"runs_dir={tmp_path / 'parallel'}", "jobs=2"), progress=False)
    parallel.prepare()  # the data as the serial run prepared it: with one thread
    torch.set_num_threads(2)  # then two workers of one thread each, like the serial run
    try:
        parallel.run()
    finally:
        torch.set_num_threads(1)
    assert set(parallel.timings) == set(serial.timings)
    assert {name for name, t in parallel.timings.items() if t["reused"]} == {"data"}
    for name in ("random", "herding", "mtt", "ltdd"):
        a = (serial.dir / "distill" / name / "distilled.safetensors").read_bytes()
        b = (parallel.dir / "distill" / name / "distilled.safetensors").read_bytes()
        assert a == b, name

    def results(run: Run) -> set:
        found = (run.dir / "eval").rglob("*.json")
        return {p.relative_to(run.dir / "eval") for p in found if ".stage." not in p.name}

    evals = results(serial)
    assert len(evals) == 7  # full, four sets, and the initial sets of mtt and ltdd
    assert results(parallel) == evals
    for rel in evals:
        a, b = read_json(serial.dir / "eval" / rel), read_json(parallel.dir / "eval" / rel)
        assert a["balanced"]["accuracy"]["runs"] == b["balanced"]["accuracy"]["runs"], rel
        assert a.get("ddranking") == b.get("ddranking"), rel
    again = Run(config(f"runs_dir={tmp_path / 'parallel'}", "jobs=2"), progress=False)
    again.run()
    assert all(t["reused"] for t in again.timings.values())


def test_a_failing_task_is_raised_after_the_running_ones_finish(tmp_path):
    torch.set_num_threads(1)
    cfg = config(
        f"runs_dir={tmp_path}", "jobs=2", "methods=[random, herding]", "baselines.feature_expert=5"
    )
    with pytest.raises(UserError, match="feature_expert=5, but only 2 representation experts"):
        Run(cfg, progress=False).run()
    # what was written stays for the next run: the experts and the random set
    assert (tmp_path / "run" / "experts" / "representation" / "stage.json").is_file()
    assert (tmp_path / "run" / "distill" / "random" / "stage.json").is_file()
