"""Search a distillation method's hyper-parameters on the validation split, with Optuna.

The run directory must hold the data and expert stages of the profile (`ltdd run`, or any run of
the profile that got past the experts). Each trial distils with the profile's section of the
method plus the trial's values, and is scored by the balanced accuracy on the validation split
(carved from the training set, `data.val_per_class`, or the one `--val-split` selects) of a
network trained on the set, measured every `--eval-every` iterations (and on the iteration-0
set); the intermediate values feed Optuna's median pruner. The test set is never read. Every
trial (values, validation curve, state, diagnostics) is written to benchmarks/results/<out>.json
and .md as it finishes, and the best values to `--write-config` (a YAML snippet of the method's
section). The study lives in an SQLite file in the run directory, so an interrupted search
continues where it stopped.

Run: `.venv/bin/python benchmarks/tune_distill.py --config configs/run/fmnist-lt-large.yaml
--run-dir runs/b100-ipc10 --trials 8` (needs the `bench` extra: `pip install -e .[bench]`).

`--grid FILE` runs a hand grid instead of the sampler, for budgets too small for a search: FILE
is a YAML mapping of trial names to dotted section keys (`{small-lr: {lr_img: 10, phase2.weight:
0.2}}`), `--only NAME ...` picks some (several processes can share one grid, one name each);
a trial's own `iterations` key replaces `--iterations` for it.
Each trial also scores its final set and its iteration-0 set on the validation split with
`--val-seeds` networks of their own (paired seeds), so its gain is a mean over seeds rather than
one network's difference; every trial present is written to the results as it finishes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path

import optuna
import torch
import yaml

from ltdd.config import load_config, to_dict
from ltdd.distill import distill
from ltdd.distill.diagnostics import read_metrics, summarize
from ltdd.distill.engine import INITIAL, METRICS, derive_seed, validation_accuracy
from ltdd.distill.methods import METHODS
from ltdd.errors import UserError
from ltdd.experts import TrajectoryStore
from ltdd.io import load_tensors, write_json, write_text
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run

from common import RESULTS, header, provenance, swap_validation

# Named starting points, evaluated first (optuna's enqueue_trial), on the profile's values for
# everything else: the official behaviour, the two departures together, and each with a larger
# initial alpha, so the search also measures them one at a time.
PRESETS = {
    "faithful": {"dam_weights": "sum", "lr_per_phase": False},
    "mean_dam+per_phase_alpha": {"dam_weights": "mean", "lr_per_phase": True},
    "faithful+lr_init_0.05": {"dam_weights": "sum", "lr_per_phase": False, "lr_init": 0.05},
    "mean_dam+per_phase_alpha+lr_init_0.05": {
        "dam_weights": "mean",
        "lr_per_phase": True,
        "lr_init": 0.05,
    },
    "mean_dam": {"dam_weights": "mean", "lr_per_phase": False},
    "per_phase_alpha": {"dam_weights": "sum", "lr_per_phase": True},
}


def suggest(trial: optuna.Trial, base: dict, method: str) -> dict:
    """The trial's values (method section keys); LTDD-only keys only for LTDD."""
    values = {
        "lr_img": trial.suggest_float("lr_img", 10.0, 3000.0, log=True),
        "lr_init": trial.suggest_float("lr_init", 0.005, 0.3, log=True),
        "lr_lr": trial.suggest_float("lr_lr", 1e-5, 1e-3, log=True),
    }
    if METHODS.get(method)().label_kind == "soft":
        values["lr_label"] = trial.suggest_float("lr_label", 0.5, 10.0, log=True)
    if method == "ltdd":
        values["dam_weights"] = trial.suggest_categorical("dam_weights", ["sum", "mean"])
        values["lr_per_phase"] = trial.suggest_categorical("lr_per_phase", [False, True])
        values["phase2.weight"] = trial.suggest_float("phase2.weight", 0.1, 1.0)
    return values


def section_with(base, values: dict):
    """The method's DistillConfig with dotted `values` applied."""
    top = {k: v for k, v in values.items() if "." not in k}
    cfg = dataclasses.replace(base, **top)
    for key, value in values.items():
        if "." in key:
            phase, name = key.split(".")
            cfg = dataclasses.replace(
                cfg, **{phase: dataclasses.replace(getattr(cfg, phase), **{name: value})}
            )
    return cfg


def trial_record(trial: optuna.trial.FrozenTrial, trial_dir: Path) -> dict:
    return record_of(
        trial_dir,
        number=trial.number,
        state=trial.state.name,
        preset=trial.user_attrs.get("preset"),
        params=trial.params,
        value=trial.value,
        seconds=trial.user_attrs.get("seconds"),
    )


def record_of(trial_dir: Path, **fields) -> dict:
    """A trial's fields plus the diagnostics its directory holds."""
    rows = read_metrics(trial_dir / METRICS) if (trial_dir / METRICS).is_file() else []
    init = None
    if (trial_dir / "initial.safetensors").is_file():
        init = load_tensors(trial_dir / "initial.safetensors")[1].get("init")
    summary = summarize(rows, init)
    return {
        **fields,
        "validation": summary["validation"],
        "phase_loss_last_over_first": summary["phase_loss_last_over_first"],
        "phase_loss_min_over_first": summary["phase_loss_min_over_first"],
        "alpha_final": summary["alpha"][-1][1] if summary["alpha"] else None,
        "image_change_final": summary["image_change_final"],
        "iterations": summary["iterations"],
    }


def paired(val: dict | None) -> str:
    """`init → final (gain)` of a trial's paired validation, means over its seeds, then the
    gain at each milestone (`@50 +0.3`)."""
    if not val:
        return "–"
    text = (
        f"{statistics.mean(val['initial']):.1f} → {statistics.mean(val['final']):.1f} "
        f"({val['gain_mean']:+.1f}, {len(val['gains'])} seeds)"
    )
    steps = [
        f"@{int(file[3:7])} {m['gain_mean']:+.1f}" for file, m in val.get("milestones", {}).items()
    ]
    return f"{text}; {', '.join(steps)}" if steps else text


def write_results(args, study: optuna.Study, records: list[dict], best: dict | None) -> None:
    split = (
        f"the validation split {' '.join(args.val_split)}"
        if args.val_split
        else "the carved validation split"
    )
    lines = [
        header(f"Distillation tuning on the validation split ({args.method})"),
        f"- run directory: `{args.run_dir}`; profile `{args.config}`; {args.iterations} "
        f"iterations per trial{' (or its own `iterations`)' if args.grid else ''}, "
        f"validation every {args.eval_every} (network trained "
        f"{args.eval_epochs} epochs on the set, balanced accuracy on {split}); "
        f"{'hand grid ' + str(args.grid) if args.grid else 'median pruner'}. "
        "The test set is not read.",
        "",
        "| trial | preset | state | params | val. acc. it 0 → last (%) | gain (pp) | "
        "paired val. init → final (pp gain) | loss last/first per phase | α final | "
        "mean image change | s |",
        "|---:|---|---|---|---|---:|---|---|---|---:|---:|",
    ]
    for r in records:
        val = r["validation"]
        first, last = (100 * val[0][1], 100 * val[-1][1]) if val else (None, None)
        gain = f"{last - first:+.1f}" if val and len(val) > 1 else "–"
        curve = " → ".join(f"{100 * v:.1f}" for _, v in val)
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items()
        )
        change = r["image_change_final"]
        lines.append(
            f"| {r['number']} | {r['preset'] or '–'} | {r['state']} | {params} | {curve} | "
            f"{gain} | {paired(r.get('paired_validation'))} | "
            f"{', '.join(f'{x:.3f}' for x in r['phase_loss_last_over_first'])} | "
            f"{', '.join(f'{a:.4g}' for a in (r['alpha_final'] or []))} | "
            f"{sum(change) / len(change) if change else float('nan'):.3f} | "
            f"{r['seconds'] or 0:.0f} |"
        )
    if best is not None:
        lines += ["", f"Best (trial {best['number']}): `{json.dumps(best['params'])}`"]
    write_text(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")
    write_json(
        RESULTS / f"{args.out}.json",
        {
            **provenance(),
            "method": args.method,
            "run_dir": str(args.run_dir),
            "config": str(args.config),
            "iterations": args.iterations,
            "eval_every": args.eval_every,
            "eval_epochs": args.eval_epochs,
            "val_split": args.val_split,
            "trials": records,
            "best": best,
        },
    )


def paired_validation(
    section, data, trial_dir: Path, seeds: int, snapshots: tuple[str, ...] = ()
) -> dict | None:
    """Validation balanced accuracy (%) of the final and the iteration-0 set of a finished trial,
    one network per seed for each (same seeds), and the paired gain; written to val.json.
    `snapshots` (files of the trial directory, e.g. `it-0050.safetensors`) are scored with the
    same seeds into `milestones`, each with its paired gain over the iteration-0 set. Scores
    already in val.json are kept. None with `seeds` 0 (the trial's own validation curve is then
    its only score)."""
    out = trial_dir / "val.json"
    cached = json.loads(out.read_text()) if out.is_file() else None
    if seeds == 0 or (cached is not None and not snapshots):
        return cached
    scores = dict(cached.get("sets", {})) if cached else {}
    if cached and not scores:  # written before snapshots existed: initial and final only
        scores = {INITIAL: cached["initial"], "distilled.safetensors": cached["final"]}

    def score(file: str) -> list[float]:
        done = scores.setdefault(file, [])
        if len(done) < seeds:  # more seeds than last time: only the new ones are trained
            tensors, _ = load_tensors(trial_dir / file)
            done += [
                100
                * validation_accuracy(
                    tensors["images"],
                    tensors["labels"],
                    float(tensors["lr"]),
                    section,
                    data,
                    torch.device("cpu"),
                    derive_seed(section.seed, 3, k),
                )
                for k in range(len(done), seeds)
            ]
        return done[:seeds]

    initial = score(INITIAL)
    milestones = {}
    for file in snapshots:
        gains = [f - i for f, i in zip(score(file), initial, strict=True)]
        milestones[file] = {
            "final": scores[file][:seeds],
            "gains": gains,
            "gain_mean": statistics.mean(gains),
        }
    # the last snapshot is the current distilled.safetensors, which changes between stops
    final = score(snapshots[-1] if snapshots else "distilled.safetensors")
    gains = [f - i for f, i in zip(final, initial, strict=True)]
    result = {
        "initial": initial,
        "final": final,
        "gain_mean": sum(gains) / len(gains),
        "gains": gains,
        "milestones": milestones,
        "sets": scores,
    }
    write_json(out, result)
    return result


def milestone_stops(milestones: list[int], iterations: int) -> list[int]:
    """The iteration counts a grid trial stops at: the milestones below `iterations`, then it."""
    return sorted({m for m in milestones if 0 < m < iterations} | {iterations})


def snapshot_name(iteration: int) -> str:
    """The file a grid trial's set at a milestone is copied to."""
    return f"it-{iteration:04d}.safetensors"


def run_grid(args, base, data, experts, tune_dir: Path) -> None:
    """The hand grid of `--grid` (see the module docstring)."""
    grid = yaml.safe_load(args.grid.read_text())
    names = args.only or list(grid)
    unknown = [n for n in names if n not in grid]
    if unknown:
        raise SystemExit(f"tune_distill: error: {unknown[0]} is not a trial of {args.grid}")

    def write_all() -> None:
        records = []
        for number, (name, values) in enumerate(grid.items()):
            trial_dir = tune_dir / "grid" / name
            if not (trial_dir / METRICS).is_file():
                continue
            final = trial_dir / "distilled.safetensors"
            # with --milestones a set exists at every stop; finished means the last stop
            reached = load_tensors(final)[1]["iterations"] if final.is_file() else 0
            finished = reached >= section_with(base, values).iterations
            rows = read_metrics(trial_dir / METRICS)
            record = record_of(
                trial_dir,
                number=number,
                state="COMPLETE" if finished else f"STOPPED at {reached}",
                preset=name,
                params=values,
                value=None,
                seconds=sum(r.get("seconds", 0.0) for r in rows),  # distillation steps only
            )
            if (trial_dir / "val.json").is_file():
                record["paired_validation"] = json.loads((trial_dir / "val.json").read_text())
                record["value"] = record["paired_validation"]["gain_mean"]
            records.append(record)
        write_results(args, None, records, None)

    for name in names:
        section = section_with(base, grid[name])
        trial_dir = tune_dir / "grid" / name
        snapshots: list[str] = []
        # the checkpoint makes each stop resume the previous one: one run, scored at each stop
        for stop in milestone_stops(args.milestones, section.iterations):
            staged = dataclasses.replace(section, iterations=stop)
            snapshot = trial_dir / snapshot_name(stop)
            if not (args.milestones and snapshot.is_file()):  # else kept by an earlier call
                distill(staged, data, experts, trial_dir, progress=False)
                reached = load_tensors(trial_dir / "distilled.safetensors")[1]["iterations"]
                if reached != stop:  # its checkpoint is already past this stop
                    raise SystemExit(
                        f"tune_distill: error: trial {name} is already at iteration {reached}, "
                        f"so its set at iteration {stop} cannot be made; drop that milestone"
                    )
                if args.milestones:
                    shutil.copy2(trial_dir / "distilled.safetensors", snapshot)
            if args.milestones:
                snapshots.append(snapshot.name)
            write_json(trial_dir / "section.json", to_dict(staged))
            paired_validation(staged, data, trial_dir, args.val_seeds, tuple(snapshots))
            write_all()
    write_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--method", default="ltdd", choices=METHODS.names())
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--eval-epochs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the search")
    parser.add_argument("--out", default="tune-distill")
    parser.add_argument("--write-config", type=Path, default=None)
    parser.add_argument("--grid", type=Path, default=None, help="YAML of named trials")
    parser.add_argument("--only", nargs="*", default=None, help="trial names of --grid")
    parser.add_argument(
        "--val-seeds", type=int, default=2, help="networks per set (--grid; 0: none)"
    )
    parser.add_argument(
        "--milestones",
        type=int,
        nargs="*",
        default=[],
        help="iteration counts at which each --grid trial's set is kept (it-NNNN.safetensors) "
        "and scored with the paired validation seeds",
    )
    parser.add_argument(
        "--val-split",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="data overrides that select another validation split for every score, e.g. "
        "data.val_from=held-out data.val_per_class=500 (its images preprocessed as the run's; "
        "the run's training images, experts and initial sets stay as they are)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the profile")
    args = parser.parse_args()
    torch.set_num_threads(1)

    overrides = [f"runs_dir={args.run_dir.parent}", f"name={args.run_dir.name}", *args.overrides]
    try:  # a bad key or value is one line, before anything is computed
        cfg = load_config(RunConfig, args.config, overrides)
        split = load_config(RunConfig, args.config, [*overrides, *args.val_split]).data
    except UserError as err:
        parser.error(str(err))
    if split.val_per_class == 0:
        parser.error("the profile has no validation split: set data.val_per_class > 0")
    run = Run(cfg, progress=False)
    data = swap_validation(run.prepare(), split if args.val_split else None)
    kinds = METHODS.get(args.method)().expert_kinds
    experts = {k: TrajectoryStore(run.dir / "experts" / run._expert_kind(k)) for k in kinds}
    base = dataclasses.replace(
        getattr(cfg.distill, args.method),
        method=args.method,
        ipc=cfg.ipc,
        iterations=args.iterations,
        eval_every=args.eval_every,
        eval_epochs=args.eval_epochs,
        checkpoint_every=args.eval_every or min(args.milestones or [args.iterations]),
    )
    tune_dir = run.dir / "tune" / args.method
    tune_dir.mkdir(parents=True, exist_ok=True)
    if args.grid is not None:
        run_grid(args, base, data, experts, tune_dir)
        return
    study = optuna.create_study(
        study_name=f"{args.method}",
        storage=f"sqlite:///{tune_dir / 'study.db'}",
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=args.eval_every),
    )
    if not study.trials:  # the presets first, on the profile's values for the rest
        defaults = {
            "lr_img": base.lr_img,
            "lr_init": base.lr_init,
            "lr_lr": base.lr_lr,
            "lr_label": base.lr_label,
            "phase2.weight": base.phase2.weight,
        }
        for name in args.presets if args.method == "ltdd" else ["faithful"]:
            preset = PRESETS[name] if args.method == "ltdd" else {}
            params = {**defaults, **preset}
            study.enqueue_trial(params, user_attrs={"preset": name})

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, base, args.method)
        section = section_with(base, values)
        trial_dir = tune_dir / f"trial-{trial.number:03d}"
        last: list[float] = []

        def on_record(record: dict) -> None:
            if "val_balanced_accuracy" in record:
                last.append(record["val_balanced_accuracy"])
                trial.report(record["val_balanced_accuracy"], record["iteration"])
                if record["iteration"] > 0 and trial.should_prune():
                    raise optuna.TrialPruned()

        tick = time.perf_counter()
        try:
            distill(section, data, experts, trial_dir, progress=False, on_record=on_record)
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - tick)
            write_json(trial_dir / "section.json", to_dict(section))
        return last[-1]

    def record_all(study: optuna.Study, _trial=None) -> None:
        records = [trial_record(t, tune_dir / f"trial-{t.number:03d}") for t in study.trials]
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = None
        if done:
            top = max(done, key=lambda t: t.value)
            best = {"number": top.number, "value": top.value, "params": top.params}
            if args.write_config:
                section = {k: v for k, v in top.params.items() if "." not in k}
                for key, value in top.params.items():
                    if "." in key:
                        phase, name = key.split(".")
                        section.setdefault(phase, {})[name] = value
                write_text(args.write_config, yaml.safe_dump({args.method: section}))
        write_results(args, study, records, best)

    waiting = optuna.trial.TrialState.WAITING
    started = [t for t in study.trials if t.state != waiting]
    remaining = max(0, args.trials - len(started))
    # a diverged distillation (UserError) is a failed trial, not the end of the search
    study.optimize(
        objective,
        n_trials=remaining,
        timeout=args.timeout,
        callbacks=[record_all],
        catch=(UserError,),
    )
    record_all(study)


if __name__ == "__main__":
    main()
