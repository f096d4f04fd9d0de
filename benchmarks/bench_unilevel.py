"""UL-LT (method `unilevel`) on Fashion-MNIST-LT: the method, its parts, baselines and timings.

Per (β, IPC) cell, in priority order: UL-LT under the shared protocol (the one LTDD is evaluated
with, configs/run/fmnist-lt.yaml's `evaluate` section) and under its own EDC-style protocol
(online teacher labels); the part-isolating baselines (random real + teacher soft labels ± ADSA,
herding + teacher soft labels, UL-LT without recovery, UL-LT without debiasing); one ablation
row per component; random real images with hard labels (the project's random baseline, rerun
as a check against benchmarks/results/methods.md). LTDD and herding (hard labels) are cited from
methods.md and science.md (same data, same shared protocol), not rerun. Every evaluation seed is
a fresh network trained on the set; accuracy is tested once, after the last epoch.

Resumable: every set and every row is stored under --work as soon as it exists; a rerun skips
them and the markdown/JSON are rewritten after every row (partial results). Writes
benchmarks/results/unilevel.md and benchmarks/results/unilevel.json (design.md contract).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import time
from pathlib import Path

import torch

from ltdd.config import load_config
from ltdd.data.dataset import prepare_data
from ltdd.distilled import DistilledSet, set_metadata
from ltdd.evaluate.evaluate import evaluate_set
from ltdd.io import read_json, write_json, write_text
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.resources import measure
from ltdd.select import extract_features, select_herding, select_random
from ltdd.unilevel.adsa import log_prior
from ltdd.unilevel.edc import evaluate_edc
from ltdd.unilevel.experts import load_expert, per_epoch_metrics
from ltdd.unilevel.relabel import OnlineTeacher
from ltdd.unilevel.synthesize import experts_folder, label_set, synthesize, without

from common import RESULTS, header, machine

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "configs" / "run" / "unilevel-fmnist.yaml"
LTDD_SET_SECONDS = {100: 246.0, 200: 251.0}  # methods.md "set wall s" of ltdd at IPC 10
METHODS_MD = "benchmarks/results/methods.md"
# Cited, not rerun: methods.md's rows (it has no JSON) at the official LTDD settings, and the
# science benchmark's current rows, read from its JSON file (science_cited_rows).
METHODS_ROWS = {  # IPC 10, shared protocol, 3 seeds: (mean, std) balanced accuracy, variant
    ("ltdd-official", 100): (75.7, 0.4, "LTDD, official settings"),
    ("ltdd-official", 200): (75.0, 0.2, "LTDD, official settings"),
}
SCIENCE_JSON = "benchmarks/results/science.json"
CHOSEN_LTDD = "chosen on validation"  # the label science.md gives a tuned LTDD ablation row


def shared_epochs(args: argparse.Namespace) -> int:
    """The shared protocol's training length in this invocation (the profile's, or overridden)."""
    return load_config(RunConfig, PROFILE, args.overrides).evaluate.train.epochs


def science_cited_rows(epochs: int) -> list[dict]:
    """Random, herding and the profile's LTDD per (β, IPC) from the science benchmark's JSON,
    evaluated for `epochs` epochs like the rows they stand beside: a cell's own rows; for LTDD,
    where its cell has none, the row chosen on validation. Rows of cells read by the science
    benchmark's last run win over rows it kept from earlier files; among equals, the last."""
    path = ROOT / SCIENCE_JSON
    if not path.is_file():
        return []
    cited: dict[tuple, dict] = {}
    rank: dict[tuple, tuple] = {}
    for r in read_json(path)["rows"]:
        method = r["method"]
        if (
            r.get("ipc") is None
            or not (method in ("random", "herding", "ltdd") or CHOSEN_LTDD in method)
            or not r["protocol"].endswith(f"; {epochs} epochs")
        ):
            continue
        key = (method.split(" ")[0], r["beta"], r["ipc"])
        order = ("kept_from" not in r, method == key[0])  # a cell's own row over an ablation's
        if key in rank and order < rank[key]:
            continue
        rank[key] = order
        acc = r["balanced_accuracy"]
        cited[key] = {
            "method": key[0],
            "variant": {"random": "hard labels", "herding": "hard labels"}.get(
                method, method.removeprefix("ltdd").strip(" ()") or "profile defaults"
            ),
            "beta": r["beta"],
            "ipc": r["ipc"],
            "mean": acc["mean"],
            "std": acc["std"],
            "source": SCIENCE_JSON.replace(".json", ".md"),
        }
    return list(cited.values())


def cited_rows(epochs: int) -> list[dict]:
    """Rows of other benchmarks, shown beside UL-LT under the same protocol (`epochs` long;
    methods.md's rows are 300 epochs long)."""
    official = [
        {
            "method": m,
            "variant": v,
            "beta": b,
            "ipc": 10,
            "mean": mean,
            "std": std,
            "source": METHODS_MD,
        }
        for (m, b), (mean, std, v) in METHODS_ROWS.items()
        if epochs == 300
    ]
    return science_cited_rows(epochs) + official


ABLATIONS = ("debiasing", "recalibration", "initialisation", "recovery", "adsa", "layerwise")


def ablation_label(base, component: str) -> str:
    """How the ablation row `-component` differs from the profile (some switches toggle)."""
    variant = without(base, component)
    if component == "recovery" and variant.recover.iterations:
        return f"with recovery ({variant.recover.iterations} it., spec default)"
    if component == "adsa":
        return "with ADSA" if variant.relabel.adsa else "without ADSA"
    if component == "layerwise":
        return f"{variant.recalibration.passes}-pass recalibration"
    return f"without {component}"


log = logging.getLogger("bench")
BASELINE_ROWS = ("random+teacher", "random+teacher+adsa", "herding+teacher")
GROUPED = ("edc/", "shared/")  # diagnosis experiments tabulated per variant, seeds side by side


class Bench:
    """One (β, IPC) cell at a time; sets and rows cached under `work`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows_path = self.work / "rows.json"
        self.rows: dict[str, dict] = read_json(self.rows_path) if self.rows_path.is_file() else {}
        self.device = torch.device("cpu")

    # ---- configs --------------------------------------------------------------------------
    def run_cfg(self, beta: float, ipc: int) -> RunConfig:
        return load_config(
            RunConfig,
            PROFILE,
            [f"data.imbalance_factor={beta}", f"ipc={ipc}", *self.args.overrides],
        )

    # ---- rows -----------------------------------------------------------------------------
    def done(self, key: str) -> bool:
        return key in self.rows

    def add(self, key: str, row: dict) -> None:
        self.rows[key] = row
        write_json(self.rows_path, self.rows)
        write_outputs(self.rows, self.args)
        acc = row["balanced_accuracy"]
        log.info("%s: %.1f ± %.1f", key, acc["mean"], acc["std"])

    # ---- sets -----------------------------------------------------------------------------
    def unilevel_set(self, cfg: RunConfig, data, variant: str) -> tuple[DistilledSet, dict]:
        """UL-LT (variant `full`) or one ablation (`-<component>`), cached as a file."""
        path = self.work / f"b{cfg.data.imbalance_factor:g}-ipc{cfg.ipc}" / f"{variant}.safetensors"
        ucfg = cfg.unilevel if variant == "full" else without(cfg.unilevel, variant[1:])
        if path.is_file():
            s = DistilledSet.load(path)
            return s, s.meta["unilevel"]["timings"]
        meta = set_metadata(data, cfg.data, "unilevel", cfg.ipc, variant=variant)
        s, timings = synthesize(ucfg, data, cfg.ipc, self.work / "experts", self.device, meta, True)
        s.save(path)
        return s, timings

    def teacher_set(self, cfg: RunConfig, data, selection: str, adsa: bool) -> DistilledSet:
        """Real images (random or herding on the teacher's features) + teacher soft labels."""
        teacher = load_expert(
            experts_folder(cfg.unilevel, data, self.work / "experts"), "teacher", data, self.device
        )
        labels = data.train_labels.numpy()
        if selection == "random":
            idx = select_random(labels, data.num_classes, cfg.ipc, 0, "duplicate")
        else:
            features = extract_features(teacher, data.train_images)
            idx = select_herding(features, labels, data.num_classes, cfg.ipc, "duplicate")
        idx = torch.as_tensor(idx)
        images, classes = data.train_images[idx], data.train_labels[idx]
        meta = set_metadata(data, cfg.data, f"{selection}+teacher", cfg.ipc)
        ucfg = without(cfg.unilevel, "adsa") if adsa != cfg.unilevel.relabel.adsa else cfg.unilevel
        labels, info = label_set(ucfg, teacher, images, classes, data.train_counts)
        meta = {**meta, "adsa_tau": info["adsa_tau"], "hard_weight": info["hard_weight"]}
        return DistilledSet(images, labels, ucfg.relabel.set_lr, meta, classes)

    # ---- evaluation -----------------------------------------------------------------------
    def shared(self, s: DistilledSet, data, cfg: RunConfig) -> dict:
        return evaluate_set(s.images, s.labels, s.lr, data, cfg.evaluate, self.device)

    def edc(self, s: DistilledSet, tau: float, data, cfg: RunConfig) -> tuple[dict, int]:
        """UL-LT's own protocol on a set: online labels of the cell's teacher shifted by τ·log π;
        the result and the epoch count."""
        teacher = load_expert(
            experts_folder(cfg.unilevel, data, self.work / "experts"), "teacher", data, self.device
        )
        online = OnlineTeacher(teacher, log_prior(data.train_counts), tau)
        edc = dataclasses.replace(cfg.unilevel.edc, seeds=cfg.evaluate.seeds)
        res = evaluate_edc(s.images, s.class_ids, data, edc, self.device, teacher=online)
        return res, edc.epochs

    def row(self, cell: dict, method: str, variant: str, protocol: str, result: dict, **extra):
        b, lt = result["balanced"], result.get("long_tailed")
        groups = {
            g: _pct(b["groups"][g]["accuracy"]) if b["groups"].get(g) else None
            for g in ("head", "medium", "tail")
        }
        return {
            "dataset": "fashion-mnist",
            "method": method,
            "variant": variant,
            **cell,
            "protocol": protocol,
            "balanced_accuracy": _pct(b["accuracy"]),
            **{f"{g}_accuracy": v for g, v in groups.items()},
            "lt_test_accuracy": _pct(lt["accuracy"]) if lt else None,
            "lt_macro_f1": lt["macro_f1"] if lt else None,
            "seeds": len(b["accuracy"]["runs"]),
            **extra,
        }

    def run_cell(self, beta: float, ipc: int, rows: list[str]) -> None:
        cfg = self.run_cfg(beta, ipc)
        torch.manual_seed(0)
        data = prepare_data(cfg.data)
        cell = {"beta": beta, "ipc": ipc}
        tag = f"b{beta:g}-ipc{ipc}"
        full, timings = self.unilevel_set(cfg, data, "full")
        self.record_experts(cfg, data, beta)
        synthesis = sum(timings[s]["wall_s"] for s in timings if s != "experts")
        for name in rows:
            key = f"{tag}/{name}"
            if self.done(key):
                continue
            started = time.perf_counter()
            if name == "unilevel":
                res = self.shared(full, data, cfg)
                extra = {
                    "stages": _stages(timings),
                    "synthesis_seconds": synthesis,
                    "adsa_tau": full.meta["unilevel"]["relabel"]["adsa_tau"],
                    "init_mode": full.meta["unilevel"]["config"]["init"]["mode"],
                }
                if ipc == 10 and int(beta) in LTDD_SET_SECONDS:
                    extra["ratio_ltdd_set_seconds_over_synthesis"] = (
                        LTDD_SET_SECONDS[int(beta)] / synthesis
                    )
                row = self.row(cell, "unilevel", "full", "shared", res, **extra)
            elif name in ("unilevel-edc", "unilevel-edc-adsa"):
                # -adsa: ADSA toggled, as in the "-adsa" ablation; the online teacher is shifted
                # by the τ* of the set's static labels (0 without ADSA). The variant names ADSA
                # on or off (not "full"), so rows stay readable when the profile's choice changes
                s = self.unilevel_set(cfg, data, "-adsa")[0] if name.endswith("-adsa") else full
                tau = s.meta["unilevel"]["relabel"]["adsa_tau"]
                res, epochs = self.edc(s, tau, data, cfg)
                label = "with ADSA" if s.meta["unilevel"]["relabel"]["adsa"] else "without ADSA"
                row = self.row(
                    cell, "unilevel", f"{label}, {epochs} epochs", "edc", res,
                    labels="online", adsa_tau=tau, edc_epochs=epochs,
                )  # fmt: skip
            elif name.startswith("-"):
                s, t = self.unilevel_set(cfg, data, name)
                res = self.shared(s, data, cfg)
                row = self.row(
                    cell,
                    "unilevel",
                    ablation_label(cfg.unilevel, name[1:]),
                    "shared",
                    res,
                    ablation=name[1:],
                    adsa_tau=s.meta["unilevel"]["relabel"]["adsa_tau"],
                    synthesis_seconds=sum(t[k]["wall_s"] for k in t if k != "experts"),
                )
            elif name.removesuffix("@edc") in BASELINE_ROWS:
                # "<baseline>@edc": the same real images under UL-LT's own protocol, a control
                # for how much of an EDC row the online teacher gives rather than the set
                base = name.removesuffix("@edc")
                s = self.teacher_set(cfg, data, base.split("+")[0], base.endswith("adsa"))
                tau = s.meta.get("adsa_tau")
                if name.endswith("@edc"):
                    res, epochs = self.edc(s, tau, data, cfg)
                    row = self.row(
                        cell, base, f"baseline, {epochs} epochs", "edc", res,
                        labels="online", adsa_tau=tau, edc_epochs=epochs,
                    )  # fmt: skip
                else:
                    res = self.shared(s, data, cfg)
                    row = self.row(cell, base, "baseline", "shared", res, adsa_tau=tau)
            elif name == "random":
                idx = torch.as_tensor(
                    select_random(data.train_labels.numpy(), data.num_classes, ipc, 0, "duplicate")
                )
                s = DistilledSet(
                    data.train_images[idx],
                    data.train_labels[idx],
                    cfg.evaluate.hard_label_lr,
                    {},
                )
                res = self.shared(s, data, cfg)
                row = self.row(cell, "random", "hard labels (rerun)", "shared", res)
            else:
                raise SystemExit(f"unknown row {name}")
            row["eval_wall_seconds"] = time.perf_counter() - started
            self.add(key, row)

    def time_synthesis(self, beta: float, ipc: int, repeats: int) -> None:
        """Per stage, the median wall and CPU seconds and the peak RSS of `repeats` syntheses
        with the experts already trained (what the set stage costs once they are cached)."""
        cfg = self.run_cfg(beta, ipc)
        data = prepare_data(cfg.data)
        meta = set_metadata(data, cfg.data, "unilevel", cfg.ipc)
        runs = [
            synthesize(cfg.unilevel, data, ipc, self.work / "experts", self.device, meta)[1]
            for _ in range(repeats)
        ]
        stages = [k for k in runs[0] if k != "experts"]
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        row = {
            stage: {
                "wall_s": med([r[stage]["wall_s"] for r in runs]),
                "cpu_s": med([r[stage]["cpu_s"] for r in runs]),
                "peak_rss_mb": max(r[stage]["peak_rss_mb"] for r in runs),
            }
            for stage in stages
        }
        total = {m: sum(row[st][m] for st in stages) for m in ("wall_s", "cpu_s")}
        path = self.work / "synthesis.json"
        doc = read_json(path) if path.is_file() else {}
        doc[f"b{beta:g}-ipc{ipc}"] = {
            "beta": beta,
            "ipc": ipc,
            "repeats": repeats,
            "stages": row,
            "synthesis": total,
            "load_average": list(os.getloadavg()),
            "ltdd_set_wall_s": LTDD_SET_SECONDS.get(int(beta)) if ipc == 10 else None,
        }
        write_json(path, doc)
        log.info("synthesis b%g ipc%d: %s", beta, ipc, total)

    def record_experts(self, cfg: RunConfig, data, beta: float) -> None:
        """Per-epoch accuracy of the debiased expert (and of the plain one when trained)."""
        for name, ucfg in (
            ("debiased", cfg.unilevel),
            ("plain", without(cfg.unilevel, "debiasing")),
        ):
            folder = experts_folder(ucfg, data, self.work / "experts")
            if (folder / "manifest.json").is_file():
                experts = (
                    read_json(self.work / "experts.json")
                    if (self.work / "experts.json").is_file()
                    else {}
                )
                experts[f"b{beta:g}/{name}"] = per_epoch_metrics(folder)
                write_json(self.work / "experts.json", experts)


def _pct(summary: dict) -> dict:
    return {
        "mean": 100 * summary["mean"],
        "std": 100 * summary["std"],
        "runs": [100 * r for r in summary["runs"]],
    }


def _stages(timings: dict) -> dict:
    return {
        k: {
            "wall_s": v["wall_s"],
            "cpu_s": v["cpu_s"],
            "peak_rss_mb": v["peak_rss_mb"],
        }
        for k, v in timings.items()
    }


# ---- output ----------------------------------------------------------------------------------
def _fmt(summary: dict | None) -> str:
    return "–" if summary is None else f"{summary['mean']:.1f} ± {summary['std']:.1f}"


def write_outputs(rows: dict[str, dict], args: argparse.Namespace) -> None:
    out = sorted(rows.values(), key=lambda r: (r["ipc"], r["beta"]))
    epochs = shared_epochs(args)
    cited = [
        {
            "dataset": "fashion-mnist",
            "method": c["method"].split("-")[0],
            "variant": f"{c['variant']}; cited from {c['source']} (not rerun)",
            "beta": c["beta"],
            "ipc": c["ipc"],
            "protocol": "shared",
            "balanced_accuracy": {"mean": c["mean"], "std": c["std"], "runs": []},
            "source": c["source"],
        }
        for c in cited_rows(epochs)
    ]
    previous = [{**r, "session": r.get("session", "previous")} for r in _previous_rows(args)]
    out = [{**r, "session": r.get("session", "current")} for r in out]
    if args.keep:  # rows of an earlier report whose work dirs are gone
        kept = kept_rows(Path(args.keep), out)
        out = [r for r in kept if r.get("session") == "current"] + out  # earlier rows first
        out.sort(key=lambda r: (r["ipc"], r["beta"]))
        previous += [r for r in kept if r.get("session") != "current"]
    add_recovery_gains(out)
    doc = {
        "command": "benchmarks/bench_unilevel.py " + " ".join(args.argv),
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "profile": str(PROFILE.relative_to(ROOT)),
        "rows": out + cited + previous,
    }
    write_json(RESULTS / f"{args.name}.json", doc)
    text = markdown(out, cited, epochs, args) + previous_table(previous)
    write_text(RESULTS / f"{args.name}.md", text)


def add_recovery_gains(rows: list[dict]) -> None:
    """UL-LT's distillation gain per cell (shared protocol): the recovered set minus its
    iteration-0 (initialisation) set, paired per seed, from the full row and its `-recovery`
    ablation row. The profile does not recover, so there the full row's gain is 0 by
    construction and the recovering variant's gain is measured against it."""
    cells: dict[tuple, dict] = {}
    for r in rows:
        if r["method"] == "unilevel" and r["protocol"] == "shared":
            cells.setdefault((r["beta"], r["ipc"]), {})[r.get("ablation", r["variant"])] = r
    for cell in cells.values():
        full, other = cell.get("full"), cell.get("recovery")
        if full is None or other is None:
            continue
        if other["variant"].startswith("with recovery"):
            full["distillation_gain"] = {"mean": 0.0, "std": 0.0, "note": "recovery off"}
            other["distillation_gain"] = _paired_gain(other, full)
        else:
            full["distillation_gain"] = _paired_gain(full, other)


def _row_key(row: dict) -> tuple:
    return (row["beta"], row["ipc"], row["method"], row.get("variant"), row.get("protocol"))


def kept_rows(path: Path, current: list[dict]) -> list[dict]:
    """The measured rows of an earlier results file (not its cited ones): its current rows that
    `current` does not measure again (same cell, method, variant and protocol), and every
    earlier session's superseded row, so that the report can grow row by row."""
    measured = {_row_key(r) for r in current}
    return [
        {**r, "kept_from": os.path.relpath(path.resolve(), ROOT)}
        for r in read_json(path)["rows"]
        if "source" not in r and (r.get("session") != "current" or _row_key(r) not in measured)
    ]


def _paired_gain(final: dict, initial: dict) -> dict:
    """Mean and population std over seeds of final − initial balanced accuracy (points)."""
    a, z = final["balanced_accuracy"]["runs"], initial["balanced_accuracy"]["runs"]
    diffs = [x - y for x, y in zip(a, z, strict=True)]
    mean = sum(diffs) / len(diffs)
    return {"mean": mean, "std": (sum((d - mean) ** 2 for d in diffs) / len(diffs)) ** 0.5}


def _previous_rows(args: argparse.Namespace) -> list[dict]:
    """Rows of earlier sessions' work dir (--previous), superseded but kept for comparison; a
    row's own `session` field (which earlier session) is kept, else it reads `previous`."""
    path = Path(args.previous) / "rows.json" if getattr(args, "previous", None) else None
    return list(read_json(path).values()) if path and path.is_file() else []


def previous_table(rows: list[dict]) -> str:
    """The superseded rows of earlier sessions (their profiles are described in the note)."""
    if not rows:
        return ""
    text = (
        "\n## Earlier sessions' rows (superseded; `session` in the JSON names the session)\n\n"
        "| session | β | IPC | method | variant | protocol | balanced acc. | seeds |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    for r in sorted(rows, key=lambda r: (r["session"], r["ipc"], r["beta"])):
        text += (
            f"| {r['session']} | {r['beta']:g} | {r['ipc']} | {r['method']} | {r['variant']} "
            f"| {r['protocol']} | {_fmt(r['balanced_accuracy'])} | {r['seeds']} |\n"
        )
    return text


def markdown(rows: list[dict], cited: list[dict], epochs: int, args) -> str:
    """The report; `epochs`: the shared protocol's length in this invocation."""
    text = header("UL-LT (method `unilevel`) on Fashion-MNIST-LT")
    text += (
        f"\nProfile `{PROFILE.relative_to(ROOT)}`. Shared protocol = the evaluation of every "
        "method of benchmarks/results/methods.md and science.md (width-32 ConvNet, "
        f"{epochs} epochs here, DSA, SGD at the set's "
        "lr, soft cross-entropy to the stored logits); `edc` = UL-LT's own (MSE to online teacher "
        "logits + 0.025 CE, AdamW, crop/flip/CutMix, EMA weights). Accuracy in %, mean ± std "
        "(ddof 0) over evaluation seeds, last epoch only. LTDD, herding and random rows marked "
        "*cited* come from methods.md or science.md (same data split and protocol; the source is "
        "named in each row), not rerun here.\n"
    )
    commands = Path(args.work) / "commands.json"
    if commands.is_file():  # the invocations whose rows are merged here
        text += "\nRuns merged into this file:\n\n" + "".join(
            f"- `{c}`\n" for c in read_json(commands)
        )
    cells = sorted({(r["beta"], r["ipc"]) for r in rows}, key=lambda c: (c[1], c[0]))
    for beta, ipc in cells:
        text += f"\n## β = {beta:g}, IPC {ipc}\n\n"
        text += (
            "| method | variant | protocol | balanced acc. | head | medium | tail "
            "| LT-test acc. | seeds |\n"
        )
        text += "|---|---|---|---|---|---|---|---|---|\n"
        for r in rows:
            if (r["beta"], r["ipc"]) != (beta, ipc):
                continue
            text += (
                f"| {r['method']} | {r['variant']} | {r['protocol']} | "
                f"{_fmt(r['balanced_accuracy'])} | {_fmt(r.get('head_accuracy'))} | "
                f"{_fmt(r.get('medium_accuracy'))} | {_fmt(r.get('tail_accuracy'))} | "
                f"{_fmt(r.get('lt_test_accuracy'))} | {r['seeds']} |\n"
            )
        for r in cited:
            if (r["beta"], r["ipc"]) == (beta, ipc):
                text += (
                    f"| {r['method']} | *cited*: {r['variant']} | shared | "
                    f"{_fmt(r['balanced_accuracy'])} | | | | | 3 |\n"
                )
    text += expert_table(Path(args.work) / "experts.json")
    text += target_check(rows, epochs, Path(args.work) / "synthesis.json")
    text += tuning_table(Path(args.work) / "tune-recovery.json")
    text += synthesis_table(Path(args.work) / "synthesis.json")
    text += diagnosis_table([Path(d) for d in getattr(args, "diagnosis", [])])
    note = getattr(args, "note_file", None)
    if note and Path(note).is_file():  # hand-written findings, kept beside the numbers
        text += "\n" + Path(note).read_text()
    stage_rows = [r for r in rows if r.get("stages")]
    if stage_rows:
        text += "\n## Stage cost (Table 9 style; wall s, peak RSS MB; 2 shared cores)\n\n"
        names = ["experts", "recalibration", "initialisation", "recovery", "relabel"]
        text += (
            "| β | IPC | "
            + " | ".join(names)
            + " | synthesis (no experts) | LTDD set / synthesis |\n"
        )
        text += "|---" * (len(names) + 4) + "|\n"
        for r in stage_rows:
            cells_ = [
                f"{r['stages'][n]['wall_s']:.1f} s, {r['stages'][n]['peak_rss_mb']:.0f} MB"
                if n in r["stages"]
                else "–"
                for n in names
            ]
            ratio = r.get("ratio_ltdd_set_seconds_over_synthesis")
            text += (
                f"| {r['beta']:g} | {r['ipc']} | "
                + " | ".join(cells_)
                + f" | {r['synthesis_seconds']:.1f} s | {f'{ratio:.1f}×' if ratio else '–'} |\n"
            )
        text += (
            "\nThe experts stage is measured when it was computed; a cached store reads in well "
            "under a second (then the row shows the reuse time). LTDD's set time is its "
            "distillation stage in methods.md (experts excluded there too).\n"
        )
    return text


def expert_table(path: Path) -> str:
    """Balanced and head/medium/tail test accuracy of the observer/teacher after every epoch."""
    if not path.is_file():
        return ""
    text = (
        "\n## Experts per epoch (ConvNet-BN observer = teacher; test accuracy, %)\n\n"
        "`debiased` = GLMC mixed views + consistency + cumulative reweighting (UL-LT); `plain` = "
        "cross-entropy on the same augmentations (the *without debiasing* ablation).\n\n"
        "`validation` = balanced accuracy on the validation split's classes 1-9 (class 0 has "
        "no image outside the LT training set at β ≥ 100), recorded when the store was "
        "trained with one; the epoch count is chosen on it, the test columns are reported only."
        "\n\n| run | epoch | validation | balanced | head | medium | tail |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    for name, epochs in read_json(path).items():
        for e in epochs:
            val = e.get("val_accuracy")
            text += (
                f"| {name} | {e['epoch']} | {'–' if val is None else f'{100 * val:.1f}'} | "
                f"{100 * e['accuracy']:.1f} | {100 * e['head']:.1f} | "
                f"{100 * e['medium']:.1f} | {100 * e['tail']:.1f} |\n"
            )
    return text


def target_check(rows: list[dict], epochs: int, synthesis_path: Path | None = None) -> str:
    """The issue's targets at β 100, IPC 10, shared protocol (`epochs` long), from the rows."""
    by = {
        (r["method"], r["variant"], r["protocol"]): r
        for r in rows
        if r["beta"] == 100 and r["ipc"] == 10
    }
    full = by.get(("unilevel", "full", "shared"))
    if full is None:
        return ""
    cited = {(c["method"], c["beta"], c["ipc"]): c for c in cited_rows(epochs)}
    if ("ltdd", 100, 10) not in cited:
        return ""
    ltdd, source = cited[("ltdd", 100, 10)]["mean"], cited[("ltdd", 100, 10)]["source"]
    official = METHODS_ROWS[("ltdd-official", 100)][0] if epochs == 300 else None
    acc = full["balanced_accuracy"]["mean"]
    best = max(
        (r for r in by.values() if r["protocol"] == "shared"),
        key=lambda r: r["balanced_accuracy"]["mean"],
    )
    ratio = full.get("ratio_ltdd_set_seconds_over_synthesis")
    timed = (
        read_json(synthesis_path).get("b100-ipc10")
        if synthesis_path and synthesis_path.is_file()
        else None
    )
    if timed:  # the current code's median synthesis (--time-synthesis) replaces the row's own
        wall, cpu = timed["synthesis"]["wall_s"], timed["synthesis"]["cpu_s"]
        row_s = full["synthesis_seconds"]
        full = {**full, "synthesis_seconds": wall}
        ratio = LTDD_SET_SECONDS[100] / wall
        timing_note = (
            f" (median of {timed['repeats']} `--time-synthesis` runs of the current code, "
            f"{cpu:.1f} CPU s, load {timed['load_average'][0]:.0f} on 2 cores; the benchmark "
            f"row's own synthesis took {row_s:.0f} s, under the load of its evaluation)"
        )
    else:
        timing_note = ""
    return (
        "\n## Targets at β = 100, IPC 10 (shared protocol)\n\n"
        f"- UL-LT {acc:.1f} vs the project's current LTDD {ltdd:.1f} ({source}): "
        f"{acc - ltdd:+.1f} points; target +5.0 "
        f"{'met' if acc - ltdd >= 5 else 'missed'} by {abs(acc - ltdd - 5):.1f} points"
        + (
            f" (against LTDD with official settings, {official:.1f} in {METHODS_MD}: "
            f"{acc - official:+.1f}).\n"
            if official is not None
            else f"; both evaluated for {epochs} epochs.\n"
        )
        + f"- Best row of this family under the shared protocol: {best['method']} "
        f"({best['variant']}) {best['balanced_accuracy']['mean']:.1f}.\n"
        + (
            f"- Synthesis (recalibration + initialisation + recovery + relabel, experts excluded) "
            f"{full['synthesis_seconds']:.0f} s vs LTDD's distillation "
            f"{LTDD_SET_SECONDS[100]:.0f} s "
            f"(methods.md, a quieter machine): {ratio:.1f}×; target 10× "
            f"{'met' if ratio >= 10 else 'missed'}{timing_note}.\n"
            if ratio
            else ""
        )
    )


def diagnosis_table(folders: list[Path]) -> str:
    """benchmarks/diagnose_unilevel.py's validation results (one student per row)."""
    found = {}
    for folder in folders:
        path = folder / "diagnose.json"
        if path.is_file():
            found.update(read_json(path))
    if not found:
        return ""
    text = (
        "\n## Diagnosis on the validation split (benchmarks/diagnose_unilevel.py; β = 100, IPC 10)"
        "\n\nValidation = 100 Fashion-MNIST training images per class outside the LT subset "
        "(class 0: LT images outside the sets), one student per row (seed 0 unless the key "
        "names another) under the shared protocol; never the test set. `targets`, `init`, "
        "`recover` and `labels` rows used the 4-epoch teacher and crop initialisation of two "
        "sessions ago unless the key says otherwise; `kappa` rows the 6-epoch teacher of the "
        "previous session (whole images, no recovery); `inits` rows this profile's 20-epoch "
        "teacher (κ 0.5 unless the group says κ 0; no recovery); `shared` and `edc` rows (s22) "
        "the same set and teacher under the shared protocol and under UL-LT's own with online "
        "teacher labels, against the profile of their time (ADSA off, 300 EDC epochs) plus the "
        "changes their key names.\n"
    )
    if "targets" in found:
        text += (
            "\nRecovery's alignment loss (terms of BN layers 1 / 2 / 3, first-layer ×10 off) of "
            "10 random real images per class and of the initial crops, against the targets of "
            "three recalibrations. Real data should nearly meet a consistent target.\n\n"
            "| targets | real images | initial crops |\n|---|---|---|\n"
        )
        for name, row in found["targets"].items():
            real, crops = (" / ".join(f"{v:.1f}" for v in row[k]) for k in ("real", "init_crops"))
            text += f"| {name} | {real} | {crops} |\n"
    singles = ""
    for key, r in found.items():
        if key == "targets" or "val" not in r or key.startswith(GROUPED):
            continue
        agree = r.get("teacher_agreement")
        change = r.get("relative_change")
        singles += (
            f"| {key} | {100 * r['val']:.1f} | "
            f"{'–' if agree is None else f'{100 * agree:.0f} %'} | "
            f"{'–' if change is None else f'{change:.2f}'} |\n"
        )
    if singles:
        text += (
            "\n| experiment | val. balanced acc. | teacher agreement | relative pixel change |\n"
            "|---|---|---|---|\n" + singles
        )
    groups: dict[str, list[float]] = {}
    for key, r in found.items():  # "inits/<mode> seed=N beta=B ipc=I", several seeds per mode
        if key.startswith(("inits/", *GROUPED)):
            mode, rest = key.split(" seed=")
            groups.setdefault(f"{mode} {rest.split(' ', 1)[1]}", []).append(100 * r["val"])
    if groups:
        text += "\n| variant (paired student seeds) | val. balanced acc. per seed | mean |\n"
        text += "|---|---|---|\n"
        for name, vals in groups.items():
            per_seed = " / ".join(f"{v:.1f}" for v in vals)
            text += f"| {name} | {per_seed} | {sum(vals) / len(vals):.1f} |\n"
    for key, r in found.items():
        if key.startswith("teacher/"):
            vals = ", ".join(f"{100 * e['val_accuracy']:.1f}" for e in r["per_epoch"])
            text += f"\n{key}: validation (classes 1-9) per epoch {vals}.\n"
    return text


def synthesis_table(path: Path) -> str:
    """`--time-synthesis` results: median stage costs with the experts cached."""
    if not path.is_file():
        return ""
    text = (
        "\n## Synthesis cost with cached experts (`--time-synthesis`; median wall and CPU s)\n\n"
        "| β | IPC | repeats | stage: wall s / CPU s / peak RSS MB | synthesis wall s | "
        "synthesis CPU s | load average (1, 5, 15 min) | LTDD set wall s / synthesis wall s |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    for r in read_json(path).values():
        stages = "; ".join(
            f"{k} {v['wall_s']:.1f} / {v['cpu_s']:.1f} / {v['peak_rss_mb']:.0f}"
            for k, v in r["stages"].items()
        )
        ltdd = r.get("ltdd_set_wall_s")
        ratio = f"{ltdd / r['synthesis']['wall_s']:.0f}×" if ltdd else "–"
        load = ", ".join(f"{x:.1f}" for x in r["load_average"])
        text += (
            f"| {r['beta']:g} | {r['ipc']} | {r['repeats']} | {stages} | "
            f"{r['synthesis']['wall_s']:.1f} | {r['synthesis']['cpu_s']:.1f} | {load} | "
            f"{ratio} |\n"
        )
    return text


def tuning_table(path: Path) -> str:
    """benchmarks/tune_unilevel_recovery.py's validation results (β 100, IPC 10), if present."""
    if not path.is_file():
        return ""
    text = (
        "\n## Recovery settings on the validation set (β = 100, IPC 10, one seed)\n\n"
        "Command: `cd benchmarks && ../.venv/bin/python tune_unilevel_recovery.py`. Same experts, "
        "recalibrated targets and initial crops; only the recovery step differs. Teacher agreement "
        "= share of recovered images the teacher assigns to their intended class. Validation = "
        "100 training images per class outside the evaluated sets (tune_unilevel_val.py); never "
        "the test set.\n\n"
        "| recovery | teacher agreement | val. balanced acc. | recovery s |\n|---|---|---|---|\n"
    )
    for name, r in read_json(path).items():
        text += (
            f"| {name} | {100 * r['teacher_agreement']:.0f} % | "
            f"{100 * r['val_balanced_accuracy']:.1f} | {r['recovery_seconds']:.0f} |\n"
        )
    return text


def merge_work(other: Path, bench: Bench) -> None:
    """Add another work dir's rows (same keys are overwritten by the later dir) and experts."""
    if (other / "rows.json").is_file():
        bench.rows.update(read_json(other / "rows.json"))
    write_json(bench.rows_path, bench.rows)
    experts_path = bench.work / "experts.json"
    experts = read_json(experts_path) if experts_path.is_file() else {}
    for manifest in sorted(other.glob("experts/*/manifest.json")):
        info = read_json(manifest)
        counts = info["train_counts"]
        kind = "debiased" if info["config"]["debias"] else "plain"
        name = f"b{round(counts[0] / counts[-1])}/{kind}"
        experts[name] = per_epoch_metrics(manifest.parent)
    write_json(experts_path, experts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["100:10", "200:10", "100:50", "200:50"])
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-unilevel"))
    parser.add_argument(
        "--rows",
        nargs="+",
        default=[
            "unilevel",
            "unilevel-edc",
            "unilevel-edc-adsa",
            "random+teacher",
            "-recovery",
            "-debiasing",
            "herding+teacher",
            "random+teacher+adsa",
            "-adsa",
            "-recalibration",
            "-initialisation",
        ],
    )
    parser.add_argument(
        "--rows-ipc50",
        nargs="+",
        default=["unilevel", "unilevel-edc", "random+teacher", "-recovery"],
    )
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note-file", default=None, help="markdown appended to the report")
    parser.add_argument(
        "--diagnosis", nargs="*", default=[], help="diagnose_unilevel.py work dirs to tabulate"
    )
    parser.add_argument(
        "--time-synthesis",
        type=int,
        default=0,
        help="only time synthesis (experts cached) this many times per cell into synthesis.json",
    )
    parser.add_argument(
        "--previous", default=None, help="a previous session's work dir: its rows, marked old"
    )
    parser.add_argument(
        "--merge", nargs="*", default=[], help="with --report-only: other work dirs to merge in"
    )
    parser.add_argument(
        "--name", default="unilevel", help="benchmarks/results/<name>.md and .json are written"
    )
    parser.add_argument(
        "--keep",
        default=None,
        help="an earlier results JSON of this script: its measured rows of the cells not in "
        "--work stay in the report (e.g. when their work dirs are gone)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the profile")
    args = parser.parse_args()
    import sys

    args.argv = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    bench = Bench(args)
    if args.report_only:
        for other in args.merge:
            merge_work(Path(other), bench)
        write_outputs(bench.rows, args)
        return
    if args.time_synthesis:
        for cell in args.cells:
            beta, ipc, *_ = cell.split(":")
            bench.time_synthesis(float(beta), int(ipc), args.time_synthesis)
        return
    for cell in args.cells:  # "beta:ipc" or "beta:ipc:row,row,..."
        beta, ipc, *only = cell.split(":")
        rows = args.rows if int(ipc) <= 10 else args.rows_ipc50
        rows = only[0].split(",") if only else rows
        with measure(bench.device):
            bench.run_cell(float(beta), int(ipc), rows)


if __name__ == "__main__":
    main()
