"""Why UL-LT loses to random real images + its own teacher's soft labels: cheap experiments,
each scored on the validation split (tune_unilevel_val.validation_set), never on the test set.

Experiments (run the ones named with --only, in order; results cached by name in
<work>/diagnose.json, so a rerun skips what exists):

- `targets`: the recovery loss (alignment terms, per layer) of real class-balanced batches and of
  the initial crops, against the targets of single-pass vs layer-wise recalibration and vs
  targets-only (buffers untouched). A consistent target is one real data nearly meets.
- `labels`: random real images + teacher logits at several temperatures and set learning rates,
  and hard labels (the shared protocol's soft cross-entropy reads softmax(logits)).
- `init`: confidence-guided initialisation at several crop scales, no recovery.
- `inits`: initialisation modes (confidence, random, herding), paired over --val-seeds students.
- `recover`: recovery variants from the chosen initialisation (teacher agreement + validation).
- `teacher`: train the debiased expert for --teacher-epochs with validation accuracy per epoch
  (classes 1..C-1 only: class 0's validation images are LT training images the teacher saw).
- `edc`, `shared`: the profile's set under UL-LT's own protocol (online teacher labels) or the
  shared one (static labels), one row per --variants entry (comma-joined `unilevel.*`
  overrides, e.g. `unilevel.edc.epochs=1000`) and student seed; with
  `unilevel.relabel.adsa=true` the labels, static or online, are shifted by ADSA's τ*.
- `grid`: PNG mosaics of the initial crops and the recovered images.

One validation student per candidate (seed 0), the shared protocol of the profile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tune_unilevel_val import validation_set

from ltdd.config import load_config
from ltdd.data.dataset import prepare_data
from ltdd.evaluate.trainer import predict, train_network
from ltdd.io import write_json
from ltdd.pipeline.config import RunConfig
from ltdd.select import select_random
from ltdd.unilevel.adsa import log_prior
from ltdd.unilevel.bnstats import bn_inputs
from ltdd.unilevel.edc import train_edc
from ltdd.unilevel.experts import ensure_experts, load_expert, per_epoch_metrics
from ltdd.unilevel.recalibrate import recalibrate
from ltdd.unilevel.recover import alignment_loss, pixel_bounds, recover
from ltdd.unilevel.relabel import OnlineTeacher, teacher_logits
from ltdd.unilevel.synthesize import experts_folder, initial_set, label_set

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "configs/run/unilevel-fmnist.yaml"
log = logging.getLogger("diagnose")


class Context:
    """Data, experts, validation split and the result cache of one diagnosis run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.overrides = [f"data.imbalance_factor={args.beta}", f"ipc={args.ipc}", *args.overrides]
        self.cfg = load_config(RunConfig, PROFILE, self.overrides)
        self.data = prepare_data(self.cfg.data)
        self.cpu = torch.device("cpu")
        self.out = Path(args.work) / "diagnose.json"
        self.results = json.loads(self.out.read_text()) if self.out.is_file() else {}
        self.random_idx = torch.as_tensor(
            select_random(self.data.train_labels.numpy(), 10, self.cfg.ipc, 0, "duplicate")
        )
        self.val_x, self.val_y = validation_set(self.cfg, self.data, self.random_idx.tolist())

    def folder(self, ucfg=None) -> Path:
        return experts_folder(ucfg or self.cfg.unilevel, self.data, Path(self.args.experts))

    def nets(self, ucfg=None):
        folder = self.folder(ucfg)
        return (
            load_expert(folder, "observer", self.data, self.cpu),
            load_expert(folder, "teacher", self.data, self.cpu),
        )

    def done(self, key: str) -> bool:
        return key in self.results

    def record(self, key: str, value: dict) -> None:
        self.results[key] = value
        write_json(self.out, self.results)
        log.info("%s: %s", key, json.dumps(value)[:300])

    def val(self, images: torch.Tensor, labels: torch.Tensor, lr: float, seed: int = 0) -> dict:
        """One student (shared protocol) → balanced and per-class validation accuracy."""
        return self.score(
            train_network(images, labels, lr, 10, self.cfg.evaluate.train, seed, self.cpu)
        )

    def score(self, model) -> dict:
        """Balanced and per-class validation accuracy of a trained student."""
        pred, truth = predict(model, self.val_x), self.val_y.numpy()
        per_class = [float((pred[truth == c] == c).mean()) for c in range(10)]
        return {"val": float(np.mean(per_class)), "val_per_class": per_class}


def agreement(teacher, images: torch.Tensor, classes: torch.Tensor) -> float:
    return float((teacher_logits(teacher, images).argmax(1) == classes).float().mean())


def exp_targets(ctx: Context) -> None:
    """Alignment loss of real balanced batches and of the initial crops under three targets."""
    if ctx.done("targets"):
        return
    rc = ctx.cfg.unilevel.recalibration
    x_real = ctx.data.train_images[ctx.random_idx]
    y_real = ctx.data.train_labels[ctx.random_idx]
    out = {}
    for name, kw in {
        "single": {"write_buffers": True, "passes": "single"},
        "layerwise": {"write_buffers": True, "passes": "layerwise"},
        "targets_only": {"write_buffers": False},
    }.items():
        observer, teacher = ctx.nets()
        targets = recalibrate(
            observer, ctx.data.train_images, ctx.data.train_labels, 10, rc.batch_size, **kw
        )
        init, classes, _ = initial_set(ctx.cfg.unilevel, teacher, ctx.data, ctx.cfg.ipc)
        row = {}
        for what, (x, y) in {"real": (x_real, y_real), "init_crops": (init, classes)}.items():
            per_layer = []
            with torch.no_grad(), bn_inputs(observer) as captured:
                observer(x)
                for layer, a in enumerate(captured):
                    only = dataclasses.replace(ctx.cfg.unilevel.recover, first_layer_weight=1.0)
                    per_layer.append(
                        float(alignment_loss([a], y, _layer(targets, layer), 10, only))
                    )
            row[what] = per_layer
        out[name] = row
    ctx.record("targets", out)


def _layer(targets, layer: int):
    """The targets of one BN layer as a one-layer BNTargets."""
    return dataclasses.replace(
        targets,
        global_mean=[targets.global_mean[layer]],
        global_var=[targets.global_var[layer]],
        class_mean=[targets.class_mean[layer]],
        class_var=[targets.class_var[layer]],
    )


def exp_labels(ctx: Context) -> None:
    """Random real images: hard labels, and teacher logits / T at several set learning rates."""
    _, teacher = ctx.nets()
    x = ctx.data.train_images[ctx.random_idx]
    y = ctx.data.train_labels[ctx.random_idx]
    logits = teacher_logits(teacher, x)
    for lr in ctx.args.lrs:
        key = f"labels/hard lr={lr:g}"
        if not ctx.done(key):
            ctx.record(key, ctx.val(x, y, lr))
        for t in ctx.args.temperatures:
            key = f"labels/teacher T={t:g} lr={lr:g}"
            if not ctx.done(key):
                ctx.record(key, ctx.val(x, logits / t, lr))


def exp_init(ctx: Context) -> None:
    """Confidence-guided crops at several scales (1.0 = whole images), no recovery."""
    _, teacher = ctx.nets()
    for lo in ctx.args.crop_scales:
        key = f"init/confidence scale=({lo:g},1)"
        if ctx.done(key):
            continue
        ucfg = dataclasses.replace(
            ctx.cfg.unilevel, init=dataclasses.replace(ctx.cfg.unilevel.init, crop_scale=(lo, 1.0))
        )
        images, classes, _ = initial_set(ucfg, teacher, ctx.data, ctx.cfg.ipc)
        logits = teacher_logits(teacher, images)
        ctx.record(
            key,
            {
                **ctx.val(images, logits, ctx.args.lr),
                "teacher_agreement": agreement(teacher, images, classes),
            },
        )


def exp_inits(ctx: Context) -> None:
    """Initialisation modes (confidence, random, herding, ...) with the profile's teacher labels
    and no recovery, each scored by the same student seeds (paired). The validation images of
    the head class exclude every candidate set's images."""
    observer, teacher = ctx.nets()
    sets = {}
    for mode in ctx.args.init_modes:  # "herding" or "herding:max_images_per_class=6000"
        name, *kv = mode.split(":")
        changes = dict(x.split("=") for x in kv)
        init = dataclasses.replace(
            ctx.cfg.unilevel.init, mode=name, **{k: int(v) for k, v in changes.items()}
        )
        ucfg = dataclasses.replace(ctx.cfg.unilevel, init=init)
        images, classes, info = initial_set(ucfg, teacher, ctx.data, ctx.cfg.ipc, observer)
        labels, _ = label_set(ucfg, teacher, images, classes, ctx.data.train_counts)
        sets[mode] = images, labels, info["source_indices"]
    used = sorted({i for *_, src in sets.values() for i in src} | set(ctx.random_idx.tolist()))
    ctx.val_x, ctx.val_y = validation_set(ctx.cfg, ctx.data, used)
    lr, kappa = ctx.cfg.unilevel.relabel.set_lr, ctx.cfg.unilevel.relabel.hard_weight
    cell = f"beta={ctx.args.beta:g} ipc={ctx.cfg.ipc}"
    for seed in ctx.args.val_seeds:
        for mode, (images, labels, _) in sets.items():
            key = f"inits/{mode} kappa={kappa:g} seed={seed} {cell}"
            if not ctx.done(key):
                row = ctx.val(images, labels, lr, seed)
                row["val_classes_1_9"] = float(np.mean(row["val_per_class"][1:]))
                ctx.record(key, row)


def exp_recover(ctx: Context) -> None:
    """Recovery variants (key=value overrides of unilevel.recover, plus `passes` and
    `write_buffers` of the recalibration) from the profile's initialisation."""
    cache: dict = {}
    _, teacher = ctx.nets()
    images, classes, _ = initial_set(ctx.cfg.unilevel, teacher, ctx.data, ctx.cfg.ipc)
    for spec in ctx.args.recover:
        key = f"recover/{spec}"
        if ctx.done(key):
            continue
        changes = dict(kv.split("=") for kv in spec.split(",")) if spec != "none" else {}
        passes = changes.pop("passes", "layerwise")
        write = changes.pop("write_buffers", "true") == "true"
        rcfg = ctx.cfg.unilevel.recover
        typed = {k: type(getattr(rcfg, k))(v) for k, v in changes.items()}
        rcfg = dataclasses.replace(rcfg, **typed)
        if spec == "none":
            rcfg = dataclasses.replace(rcfg, iterations=0)
        if (passes, write) not in cache:
            observer, _ = ctx.nets()
            rc = ctx.cfg.unilevel.recalibration
            targets = recalibrate(
                observer,
                ctx.data.train_images,
                ctx.data.train_labels,
                10,
                rc.batch_size,
                write_buffers=write,
                passes=passes,
            )
            cache[passes, write] = observer, targets
        observer, targets = cache[passes, write]
        started = time.perf_counter()
        rec, history = recover(
            observer, images, classes, targets, 10, rcfg, pixel_bounds(ctx.data.train_images), 0
        )
        seconds = time.perf_counter() - started
        logits = teacher_logits(teacher, rec)
        change = float((rec - images).norm() / images.norm())
        name = spec.replace("=", "").replace(",", "_")
        torch.save(rec, Path(ctx.args.work) / f"recover-{name}.pt")
        ctx.record(
            key,
            {
                **ctx.val(rec, logits, ctx.args.lr),
                "teacher_agreement": agreement(teacher, rec, classes),
                "relative_change": change,
                "loss_first_last": [history[0], history[-1]] if history else None,
                "recovery_seconds": seconds,
            },
        )


def exp_kappa(ctx: Context) -> None:
    """The profile's set (init + recovery) with the hard-label share κ of its stored labels."""
    observer, teacher = ctx.nets()
    ucfg = ctx.cfg.unilevel
    images, classes, _ = initial_set(ucfg, teacher, ctx.data, ctx.cfg.ipc)
    if ucfg.recover.iterations:
        targets = recalibrate(observer, ctx.data.train_images, ctx.data.train_labels, 10)
        bounds = pixel_bounds(ctx.data.train_images)
        images, _ = recover(observer, images, classes, targets, 10, ucfg.recover, bounds, 0)
    for kappa in ctx.args.kappas:
        key = f"kappa/{kappa:g} T={ucfg.relabel.temperature:g} lr={ucfg.relabel.set_lr:g}"
        if ctx.done(key):
            continue
        cfg = dataclasses.replace(
            ucfg, relabel=dataclasses.replace(ucfg.relabel, hard_weight=kappa)
        )
        labels, _ = label_set(cfg, teacher, images, classes, ctx.data.train_counts)
        ctx.record(key, ctx.val(images, labels, ucfg.relabel.set_lr))


def exp_teacher(ctx: Context) -> None:
    """A longer-trained debiased expert, validation accuracy (classes 1..9) after every epoch."""
    ucfg = dataclasses.replace(
        ctx.cfg.unilevel,
        experts=dataclasses.replace(ctx.cfg.unilevel.experts, epochs=ctx.args.teacher_epochs),
    )
    key = f"teacher/epochs={ctx.args.teacher_epochs} beta={ctx.args.beta:g}"
    if ctx.done(key):
        return
    keep = ctx.val_y != 0
    folder = ctx.folder(ucfg)
    ensure_experts(
        ucfg.experts, ctx.data, folder, ctx.cpu, True, (ctx.val_x[keep], ctx.val_y[keep])
    )
    rows = per_epoch_metrics(folder)
    ctx.record(
        key,
        {
            "folder": str(folder.resolve().relative_to(ROOT)),
            "per_epoch": [
                {k: r.get(k) for k in ("epoch", "val_accuracy", "accuracy", "head", "tail")}
                for r in rows
            ],
        },
    )


def _variant_rows(ctx: Context, protocol: str) -> None:
    """The profile's set, once per --variants entry (its `unilevel.*` overrides change the labels
    and the protocol) and student seed, under `protocol`: `shared` (static labels, the
    profile's evaluation) or `edc` (online teacher labels, ADSA-shifted when the variant's
    labels are). Scored on the validation split that excludes the set's images."""
    observer, teacher = ctx.nets()
    images, classes, info = initial_set(ctx.cfg.unilevel, teacher, ctx.data, ctx.cfg.ipc, observer)
    ctx.val_x, ctx.val_y = validation_set(ctx.cfg, ctx.data, info["source_indices"])
    log_pi = log_prior(ctx.data.train_counts)
    cell = f"beta={ctx.args.beta:g} ipc={ctx.cfg.ipc}"
    for variant in ctx.args.variants:
        changes = [c for c in variant.split(",") if c]
        vcfg = load_config(RunConfig, PROFILE, [*ctx.overrides, *changes]).unilevel
        labels, labelled = label_set(vcfg, teacher, images, classes, ctx.data.train_counts)
        online = OnlineTeacher(teacher, log_pi, labelled["adsa_tau"])
        for seed in ctx.args.val_seeds:
            key = f"{protocol}/{variant or 'profile'} seed={seed} {cell}"
            if ctx.done(key):
                continue
            started = time.perf_counter()
            if protocol == "edc":
                model = train_edc(images, classes, None, online, 10, vcfg.edc, seed, ctx.cpu)
                row = {**ctx.score(model), "epochs": vcfg.edc.epochs}
            else:
                row = ctx.val(images, labels, vcfg.relabel.set_lr, seed)
            row.update(
                val_classes_1_9=float(np.mean(row["val_per_class"][1:])),
                adsa_tau=labelled["adsa_tau"],
                seconds=time.perf_counter() - started,
            )
            ctx.record(key, row)


def exp_edc(ctx: Context) -> None:
    """The profile's set under UL-LT's own protocol, per variant and student seed."""
    _variant_rows(ctx, "edc")


def exp_shared(ctx: Context) -> None:
    """The profile's set under the shared protocol (static labels), per variant and seed."""
    _variant_rows(ctx, "shared")


def exp_grid(ctx: Context) -> None:
    """Mosaics (pixel space) of the initial crops and of every recovered set saved so far."""
    from ltdd.report.figures import image_grid_figure, mosaic

    _, teacher = ctx.nets()
    images, classes, _ = initial_set(ctx.cfg.unilevel, teacher, ctx.data, ctx.cfg.ipc)
    pre = ctx.data.preprocessing
    panels = {"init crops": {"": mosaic(pre.inverse_transform(images), classes, 10, 10)}}
    real = ctx.data.train_images[ctx.random_idx]
    panels["random real"] = {
        "": mosaic(pre.inverse_transform(real), ctx.data.train_labels[ctx.random_idx], 10, 10)
    }
    for path in sorted(Path(ctx.args.work).glob("recover-*.pt")):
        panels[path.stem] = {"": mosaic(pre.inverse_transform(torch.load(path)), classes, 10, 10)}
    image_grid_figure(panels, Path(ctx.args.work) / "grid.png")


EXPERIMENTS = {
    "targets": exp_targets,
    "labels": exp_labels,
    "init": exp_init,
    "inits": exp_inits,
    "recover": exp_recover,
    "teacher": exp_teacher,
    "kappa": exp_kappa,
    "edc": exp_edc,
    "shared": exp_shared,
    "grid": exp_grid,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--beta", type=float, default=100)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--work", default=str(ROOT / "runs/diagnose-unilevel"))
    parser.add_argument("--experts", default=str(ROOT / "runs/bench-unilevel/experts"))
    parser.add_argument("--lr", type=float, default=0.01, help="set lr of init/recover runs")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--crop-scales", type=float, nargs="+", default=[0.5, 0.8, 1.0])
    parser.add_argument("--recover", nargs="+", default=["passes=single", "passes=layerwise"])
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument(
        "--init-modes", nargs="+", default=["confidence", "random", "herding"],
        help="inits: init.mode[:max_images_per_class=N]",
    )  # fmt: skip
    parser.add_argument("--val-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kappas", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument(
        "--variants", nargs="+", default=[""],
        help="edc, shared: comma-joined unilevel.* overrides per variant ('' = the profile)",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the profile")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    ctx = Context(args)
    for name in args.only:
        EXPERIMENTS[name](ctx)


if __name__ == "__main__":
    main()
