"""`ltdd run`: stage reuse by configuration hash, and a report whose numbers come from the JSON."""

import json
import re

import torch

from ltdd.config import load_config
from ltdd.distilled import DistilledSet
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run
from ltdd.report.build import build_report

BASE = [
    "ipc=2",
    "methods=[random, herding, mtt, ltdd]",
    "share_experts=true",
    "data.dataset=procedural",
    "data.imbalance_factor=10",
    "experts.representation={num_experts: 2, vectorize: 2, epochs: 3, width: 4, batch_size: 256}",
    "experts.classifier={num_experts: 2, vectorize: 2, epochs: 2, width: 4, batch_size: 256}",
    "distill.mtt={iterations: 2, width: 4, phase1: {syn_steps: 2, max_start_epoch: 1}}",
    "distill.ltdd={iterations: 2, width: 4, phase1: {syn_steps: 2, max_start_epoch: 1},"
    " phase2: {syn_steps: 2}}",
    "evaluate.seeds=2",
    "evaluate.train={epochs: 2, width: 4}",
    "evaluate.full_epochs=1",
]


def run(tmp_path, *extra):
    cfg = load_config(RunConfig, None, [*BASE, f"runs_dir={tmp_path}", *extra])
    r = Run(cfg, progress=False)
    r.run()
    return r


def computed(r: Run) -> set[str]:
    return {name for name, t in r.timings.items() if not t["reused"]}


def test_a_changed_key_recomputes_exactly_the_stages_that_depend_on_it(tmp_path):
    torch.set_num_threads(1)
    r = run(tmp_path)
    everything = set(r.timings)
    assert computed(r) == everything
    assert computed(run(tmp_path)) == set()  # a second run reuses every stage
    evals = {s for s in everything if s.startswith("eval/")}
    assert computed(run(tmp_path, "evaluate.train.epochs=1")) == evals
    ltdd = run(tmp_path, "evaluate.train.epochs=1", "distill.ltdd.lr_img=50")
    assert computed(ltdd) == {"set/ltdd", "eval/ltdd", "eval/init/ltdd"}
    classifier = run(
        tmp_path, "evaluate.train.epochs=1", "distill.ltdd.lr_img=50", "experts.classifier.lr=0.02"
    )
    assert computed(classifier) == {
        "experts/classifier",
        "set/ltdd",
        "eval/ltdd",
        "eval/init/ltdd",
    }
    herding = run(
        tmp_path,
        "evaluate.train.epochs=1",
        "distill.ltdd.lr_img=50",
        "experts.classifier.lr=0.02",
        "baselines.feature_expert=1",
    )
    assert computed(herding) == {"set/herding", "eval/herding"}
    assert computed(run(tmp_path, "data.imbalance_factor=5")) == everything


def test_report_numbers_equal_the_json_they_came_from(tmp_path):
    torch.set_num_threads(1)
    r = run(tmp_path, "methods=[random, ltdd]")
    report = build_report([r.dir]).read_text()
    rows: dict[str, str] = {}  # first table: the balanced test set
    for line in report.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    for method in ("full", "random", "ltdd"):
        result = json.loads((r.dir / "eval" / f"{method}.json").read_text())
        acc = result["balanced"]["accuracy"]
        expected = f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f}"
        assert expected in rows[method]
        tail = result["balanced"]["groups"]["tail"]["accuracy"]
        assert f"{100 * tail['mean']:.1f} ± {100 * tail['std']:.1f}" in rows[method]
    dd = json.loads((r.dir / "eval" / "ltdd.json").read_text())["ddranking"]
    line = next(
        x for x in report.splitlines() if x.startswith("| ltdd") and "0." in x and x.count("|") == 6
    )
    assert f"{dd['lrs']['mean']:.3f} ± {dd['lrs']['std']:.3f}" in line
    timings = json.loads((r.dir / "timings.json").read_text())
    wall = f"{timings['set/ltdd']['wall_s']:.1f}"
    assert re.search(rf"\| set/ltdd \| {re.escape(wall)} \|", report)
    ltdd_set = DistilledSet.load(r.dir / "distill" / "ltdd" / "distilled.safetensors")
    assert ltdd_set.label_kind == "soft"
    assert torch.equal(ltdd_set.classes, torch.arange(10).repeat_interleave(2))
    for figure in ("classwise.png", "images.png", "losses.png"):
        assert (r.dir / "report" / figure).stat().st_size > 1000


def test_gain_diagnostics_and_balanced_full_row(tmp_path):
    """The iteration-0 set is evaluated with the same seeds; the gain is the per-seed paired
    difference; the report shows it; `full_balanced` trains on class-balanced re-sampling."""
    from ltdd.evaluate.gain import distillation_gain

    torch.set_num_threads(1)
    r = run(
        tmp_path,
        "methods=[random, ltdd]",
        "evaluate.ddranking=false",
        "evaluate.full_balanced=true",
        "evaluate.full_balanced_epochs=1",
    )
    final = json.loads((r.dir / "eval" / "ltdd.json").read_text())["balanced"]["accuracy"]
    init = json.loads((r.dir / "eval" / "init" / "ltdd.json").read_text())
    assert init["iteration"] == 0
    expected = distillation_gain(final["runs"], init["balanced"]["accuracy"]["runs"])
    assert init["distillation_gain"] == expected
    assert not (r.dir / "eval" / "init" / "random.json").exists()
    balanced = json.loads((r.dir / "eval" / "full_balanced.json").read_text())
    assert balanced["method"] == "full_balanced"
    assert balanced["settings"]["num_images"] == 10 * max(r.data.train_counts)
    report = (r.dir / "report" / "report.md").read_text()
    assert "## Distillation diagnostics" in report
    section = report.split("## Distillation diagnostics")[1]
    line = next(x for x in section.splitlines() if x.startswith("| ltdd |"))
    assert f"{expected['mean']:+.1f} ± {expected['std']:.1f}" in line


def test_more_iterations_continue_the_checkpoint_and_equal_a_fresh_run(tmp_path, caplog):
    torch.set_num_threads(1)
    only_ltdd = ["methods=[ltdd]", "evaluate.initial_sets=false"]
    run(tmp_path / "short", *only_ltdd)
    with caplog.at_level("INFO", logger="ltdd"):
        longer = run(tmp_path / "short", *only_ltdd, "distill.ltdd.iterations=3")
    assert computed(longer) == {"set/ltdd", "eval/ltdd"}
    assert "resuming from" in caplog.text and "at iteration 2" in caplog.text
    fresh = run(tmp_path / "fresh", *only_ltdd, "distill.ltdd.iterations=3")

    def final_set(r: Run) -> DistilledSet:
        return DistilledSet.load(r.dir / "distill" / "ltdd" / "distilled.safetensors")

    continued, straight = final_set(longer), final_set(fresh)
    assert continued.meta["iterations"] == 3
    assert torch.equal(continued.images, straight.images)
    assert torch.equal(continued.labels, straight.labels)
    caplog.clear()
    with caplog.at_level("INFO", logger="ltdd"):
        fewer = run(tmp_path / "short", *only_ltdd, "distill.ltdd.iterations=1")
    assert "resuming from" not in caplog.text  # a checkpoint past the target starts over
    assert final_set(fewer).meta["iterations"] == 1
    caplog.clear()
    with caplog.at_level("INFO", logger="ltdd"):
        other = run(
            tmp_path / "short", *only_ltdd, "distill.ltdd.iterations=2", "distill.ltdd.lr_img=50"
        )
    assert "resuming from" not in caplog.text  # more iterations, but another image step
    assert final_set(other).meta["config"]["lr_img"] == 50
