"""The trajectory-matching engine: the only outer loop, shared by every method.

One outer iteration: for each phase of the method, draw the next expert (without replacement),
a start epoch and the inner-step batches with their DSA draws, compute the phase's gradients
(`matching.GRADIENT_MODES`), combine them with the phase weights lambda, and step the three SGD
optimisers (images momentum 0.5, soft-label logits 0.9, learning rate alpha 0.5; reference §5.5).

Files in `out_dir`: `initial.safetensors` (the iteration-0 set, in the distilled-set format, so
the distillation gain can be measured), `checkpoint.safetensors` (every `checkpoint_every`
iterations, atomic; holds the optimiser and generator states, expert cursors and iteration, so a
resumed run equals an uninterrupted one), `metrics.jsonl` (one line per iteration, with the
diagnostics of `ltdd.distill.diagnostics`) and the final `distilled.safetensors`.

With `lr_per_phase`, alpha is a vector with one entry per phase (phase i's student uses entry
i); otherwise a scalar shared by every phase (the reference).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ltdd import tracking
from ltdd.allocator import keep_freed_memory
from ltdd.config import to_dict
from ltdd.data.augment import apply_dsa, sample_dsa
from ltdd.data.dataset import LongTailedData
from ltdd.distill.classnorm import normalise_image_gradient
from ltdd.distill.config import DistillConfig, PhaseConfig, check_phase
from ltdd.distill.init import average_correct_logits, init_images
from ltdd.distill.losses import InnerLoss, inner_loss
from ltdd.distill.matching import GRADIENT_MODES, InnerStep, PhaseGradients
from ltdd.distill.methods import METHODS, Method, Phase
from ltdd.distill.schedule import ExpertCursor, inner_batches, sample_start_epoch, start_epoch_bound
from ltdd.distill.student import Student
from ltdd.errors import UserError
from ltdd.evaluate.trainer import TrainConfig, predict, train_network
from ltdd.io import load_meta, load_tensors, save_tensors, write_text
from ltdd.models import ParamLayout, create_model
from ltdd.select import extract_features, model_from_flat, select_herding

log = logging.getLogger(__name__)

IMAGE_MOMENTUM = 0.5
LABEL_MOMENTUM = 0.9
LR_MOMENTUM = 0.5
CHECKPOINT = "checkpoint.safetensors"
INITIAL = "initial.safetensors"
METRICS = "metrics.jsonl"
DISTILLED = "distilled.safetensors"
_LEARNED = ("images", "labels", "lr")
_SCHEDULE_KEYS = ("iterations", "checkpoint_every", "eval_every", "eval_epochs")


class Diverged(Exception):
    """A non-finite loss, gradient or value, or a learning rate <= 0, during an iteration."""


class TrajectorySource(Protocol):
    """Expert trajectories: flat parameter snapshots (P,) float32 per expert and kept epoch."""

    num_experts: int
    epochs: list[int]

    def snapshot(self, expert: int, epoch: int) -> Tensor: ...


@dataclass(frozen=True)
class PhasePlan:
    """A method phase resolved against the config, the experts and the student."""

    spec: Phase
    cfg: PhaseConfig
    source: TrajectorySource
    loss_fn: InnerLoss
    match: Tensor
    free_start: int


@dataclass
class State:
    """Everything a checkpoint holds."""

    iteration: int
    images: Tensor
    labels: Tensor
    lr: Tensor
    optimizers: dict[str, torch.optim.SGD]
    generators: list[torch.Generator]
    cursors: list[ExpertCursor]
    init_record: dict


def derive_seed(seed: int, *stream: int) -> int:
    """An independent 63-bit seed for stream `stream` of run seed `seed`."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(2, np.uint64)[0] >> 1)


def config_hash(cfg: DistillConfig, resumable: bool = False) -> str:
    """sha256 of the config; with `resumable`, of the keys that shape the iterations only, so a
    checkpoint can be continued with more iterations or another checkpoint/eval schedule."""
    values = to_dict(cfg)
    if resumable:
        for key in _SCHEDULE_KEYS:
            values.pop(key)
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_method(cfg: DistillConfig) -> tuple[Method, str]:
    """The method with the config's `image_init` applied, and the gradient mode (the config's,
    else the method's default)."""
    method = METHODS.get(cfg.method)()
    if cfg.image_init is not None:
        try:
            method = dataclasses.replace(method, image_init=cfg.image_init)
        except ValueError:
            raise UserError(
                f"image_init {cfg.image_init} needs experts to classify images, and method "
                f"{cfg.method} has none; use image_init: random_real"
            ) from None
    return method, cfg.gradient or method.gradient


def build_student(cfg: DistillConfig, data: LongTailedData, device: torch.device) -> Student:
    model = create_model(
        cfg.model, data.num_classes, data.image_shape, seed=cfg.seed, **cfg.model_overrides()
    )
    model = model.to(device).train()
    return Student(model=model, layout=ParamLayout.from_module(model))


def plan_phases(
    method: Method,
    cfg: DistillConfig,
    experts: dict[str, TrajectorySource],
    student: Student,
    counts: list[int],
    device: torch.device,
) -> list[PhasePlan]:
    """Check the experts against the config and the student, and resolve each phase."""
    missing = [k for k in method.expert_kinds if k not in experts]
    if missing:
        raise UserError(
            f"method {cfg.method} needs {missing[0]} experts, but only "
            f"{', '.join(sorted(experts)) or 'none'} were given; train them with `ltdd experts`"
        )
    for kind in method.expert_kinds:
        source = experts[kind]
        size = source.snapshot(0, source.epochs[0]).numel()
        if size != student.layout.num_params:
            raise UserError(
                f"{kind} experts have {size} parameters but model {cfg.model} with "
                f"{cfg.model_overrides()} has {student.layout.num_params}; use the experts' model"
            )
    plans = []
    for i, spec in enumerate(method.phases):
        phase_cfg = cfg.phase(i)
        check_phase(f"phase{i + 1}", phase_cfg, cfg.expert_epochs, experts[spec.experts].epochs)
        plans.append(
            PhasePlan(
                spec=spec,
                cfg=phase_cfg,
                source=experts[spec.experts],
                loss_fn=inner_loss(spec.inner_loss, counts, cfg.dam_weights),
                match=student.mask(spec.match).to(device),
                free_start=student.free_start(spec.update),
            )
        )
    return plans


def _logits_fn(
    student: Student, source: TrajectorySource, expert: int, device: torch.device
) -> Callable[[Tensor], Tensor]:
    """The logits of `expert` at its last kept epoch, in batches."""
    flat = source.snapshot(expert, source.epochs[-1]).to(device)
    none = flat[:0]

    @torch.no_grad()
    def logits(x: Tensor) -> Tensor:
        batches = [x[i : i + 256].to(device) for i in range(0, len(x), 256)]
        return torch.cat([student.forward(none, flat, b).cpu() for b in batches])

    return logits


def initial_state(
    cfg: DistillConfig,
    method: Method,
    data: LongTailedData,
    experts: dict[str, TrajectorySource],
    student: Student,
    plans: list[PhasePlan],
    device: torch.device,
) -> State:
    """Synthetic images and labels (reference §5.3-5.4), alpha and fresh optimisers."""
    generator = torch.Generator().manual_seed(derive_seed(cfg.seed, 0))
    predict = None
    if method.image_init == "correct_real":  # the first init expert selects, as the reference
        selector = _logits_fn(student, experts[method.init_experts], 0, device)

        def predict(x: Tensor) -> Tensor:
            return selector(x).argmax(dim=1)

    if method.image_init == "herding":
        images, classes, record = herding_images(cfg, data, experts[method.phases[0].experts])
    else:
        images, classes, record = init_images(
            data.train_images.cpu(),
            data.train_labels.cpu(),
            data.num_classes,
            cfg.ipc,
            cfg.fill,
            generator,
            predict=predict,
            jitter=cfg.jitter,
        )
    if method.label_kind == "hard":
        labels = classes
    else:
        source = experts[method.init_experts]
        labels = average_correct_logits(
            (_logits_fn(student, source, e, device)(images) for e in range(source.num_experts)),
            classes,
        )
        record["label_init"] = f"mean logits of the correct {method.init_experts} experts"
    images = images.to(device).requires_grad_()
    labels = labels.to(device)
    if cfg.lr_per_phase:
        alphas = [p.cfg.lr_init if p.cfg.lr_init is not None else cfg.lr_init for p in plans]
        lr = torch.tensor(alphas, device=device).requires_grad_()
    else:
        lr = torch.tensor(cfg.lr_init, device=device).requires_grad_()
    optimizers = {
        "images": torch.optim.SGD([images], lr=cfg.image_lr, momentum=IMAGE_MOMENTUM),
        "lr": torch.optim.SGD([lr], lr=cfg.lr_lr, momentum=LR_MOMENTUM),
    }
    if method.label_kind == "soft":
        labels.requires_grad_()
        optimizers["labels"] = torch.optim.SGD([labels], lr=cfg.lr_label, momentum=LABEL_MOMENTUM)
    return State(
        iteration=0,
        images=images,
        labels=labels,
        lr=lr,
        optimizers=optimizers,
        generators=[
            torch.Generator().manual_seed(derive_seed(cfg.seed, 1, i)) for i in range(len(plans))
        ],
        cursors=[ExpertCursor.fresh(plan.source.num_experts) for plan in plans],
        init_record=record,
    )


def herding_images(
    cfg: DistillConfig, data: LongTailedData, source: TrajectorySource
) -> tuple[Tensor, Tensor, dict]:
    """IPC images per class chosen by herding on the features of `source`'s expert 0 at its last
    kept epoch (classes with fewer images repeat theirs cyclically), their classes and a record."""
    overrides = {k: v for k, v in cfg.model_overrides().items() if v is not None}
    flat = source.snapshot(0, source.epochs[-1])
    model = model_from_flat(cfg.model, data.num_classes, data.image_shape, flat, **overrides)
    features = extract_features(model, data.train_images.cpu())
    labels = data.train_labels.cpu()
    index = torch.as_tensor(select_herding(features, labels.numpy(), data.num_classes, cfg.ipc))
    real = [min(cfg.ipc, int((labels == c).sum())) for c in range(data.num_classes)]
    record = {
        "selection": "herding",
        "fill_policy": "duplicate",
        "jitter": None,
        "real_per_class": real,
        "filled_per_class": [cfg.ipc - r for r in real],
        "noise_classes": [],
    }
    return data.train_images.cpu()[index], labels[index], record


def _steps(
    state: State, cfg: DistillConfig, plan: PhasePlan, generator: torch.Generator
) -> list[InnerStep]:
    """The inner steps of a phase: batches and DSA draws, drawn once, replayed by every pass."""
    n = len(state.images)
    device = state.images.device
    steps = []
    for index in inner_batches(n, cfg.batch_syn or n, plan.cfg.syn_steps, generator):
        draw = sample_dsa(len(index), tuple(state.images.shape[1:]), generator, cfg.dsa).to(device)
        steps.append(InnerStep(index=index.to(device), augment=lambda x, d=draw: apply_dsa(x, d)))
    return steps


def run_phase(
    state: State,
    cfg: DistillConfig,
    plan: PhasePlan,
    student: Student,
    gradient: str,
    cursor: ExpertCursor,
    generator: torch.Generator,
    lr: Tensor,
) -> tuple[PhaseGradients, int, int]:
    """Draw the expert, start epoch and steps of one phase and compute its gradients."""
    expert = cursor.next(generator)
    bound = start_epoch_bound(
        state.iteration,
        plan.cfg.min_start_epoch,
        plan.cfg.current_max_start_epoch,
        plan.cfg.max_start_epoch,
        plan.cfg.expansion_end_epoch,
        plan.cfg.sequential_generation,
    )
    start_epoch = sample_start_epoch(plan.cfg.min_start_epoch, bound, generator)
    device = state.images.device
    start = plan.source.snapshot(expert, start_epoch).to(device)
    target = plan.source.snapshot(expert, start_epoch + cfg.expert_epochs).to(device)
    grads = GRADIENT_MODES.get(gradient)(
        student.forward,
        plan.loss_fn,
        state.images,
        state.labels,
        lr,
        start,
        target,
        _steps(state, cfg, plan, generator),
        plan.match,
        plan.free_start,
    )
    return grads, expert, start_epoch


def _stop(iteration: int, what: str, out_dir: Path, saved: int | None) -> UserError:
    kept = (
        f"the last good checkpoint (iteration {saved}) is kept in {out_dir / CHECKPOINT}"
        if saved is not None
        else "no checkpoint was written yet"
    )
    return UserError(
        f"distillation diverged at iteration {iteration}: {what}; {kept}; "
        "lower lr_img, lr_label or lr_lr and run again"
    )


def outer_step(
    state: State,
    cfg: DistillConfig,
    plans: list[PhasePlan],
    student: Student,
    gradient: str,
) -> dict:
    """One outer iteration; returns its metrics. Raises `Diverged` naming what is not finite."""
    combined = {"images": 0.0, "labels": 0.0, "lr": 0.0}
    losses, raw, experts, starts, lr_grads = [], [], [], [], []
    for i, (plan, cursor, generator) in enumerate(
        zip(plans, state.cursors, state.generators, strict=True)
    ):
        grads, expert, start_epoch = run_phase(
            state, cfg, plan, student, gradient, cursor, generator, phase_lr(state.lr, i)
        )
        weight = plan.cfg.weight
        losses.append(weight * float(grads.loss))
        raw.append(float(grads.loss))
        experts.append(expert)
        starts.append(start_epoch)
        combined["images"] = combined["images"] + weight * grads.images
        lr_grads.append(weight * grads.lr)
        if grads.labels is not None:
            combined["labels"] = combined["labels"] + weight * grads.labels
    combined["lr"] = torch.stack(lr_grads) if state.lr.dim() else sum(lr_grads)
    combined["images"] = normalise_image_gradient(combined["images"], cfg.ipc, cfg.image_grad_norm)
    total = sum(losses)
    if not np.isfinite(total):
        raise Diverged(f"matching loss is {total}")
    for name, grad in combined.items():
        if isinstance(grad, Tensor) and not torch.isfinite(grad).all():
            raise Diverged(f"the gradient of the {name} is not finite")
    updated = cfg.threshold is None or total <= cfg.threshold
    if updated:
        for name, opt in state.optimizers.items():
            param = getattr(state, name)
            param.grad = combined[name].detach().to(param.dtype).reshape(param.shape)
            opt.step()
            param.grad = None
    for name in state.optimizers:
        if not torch.isfinite(getattr(state, name)).all():
            raise Diverged(f"the {name} are not finite after the update")
    if float(state.lr.detach().min()) <= 0:
        raise Diverged(
            f"the learned learning rate became {float(state.lr.detach().min()):.3g} <= 0"
        )
    state.iteration += 1
    return {
        "iteration": state.iteration,
        "loss": total,
        "phase_losses": losses,
        "phase_matching_losses": raw,
        "experts": experts,
        "start_epochs": starts,
        "lr": eval_lr(state, cfg.eval_lr_scale),
        "phase_lr": [float(phase_lr(state.lr, i).detach()) for i in range(len(plans))],
        "updated": updated,
    }


def phase_lr(lr: Tensor, index: int) -> Tensor:
    """Phase `index`'s alpha: entry `index` of a per-phase alpha vector, else the shared one."""
    return lr[index] if lr.dim() else lr


def eval_lr(state: State, scale: float = 1.0) -> float:
    """The set's evaluation learning rate: `scale` times the shared alpha, or phase 1's with
    `lr_per_phase` (`eval_lr_scale`; the official code uses alpha itself, scale 1)."""
    return scale * float(phase_lr(state.lr, 0).detach())


def _momentum(opt: torch.optim.SGD) -> Tensor | None:
    param = opt.param_groups[0]["params"][0]
    return opt.state.get(param, {}).get("momentum_buffer")


def save_checkpoint(path: Path, state: State, cfg: DistillConfig) -> None:
    """Atomically write the full state (tensors + JSON metadata)."""
    tensors = {name: getattr(state, name) for name in _LEARNED}
    for name, opt in state.optimizers.items():
        buf = _momentum(opt)
        if buf is not None:
            tensors[f"momentum.{name}"] = buf
    for i, gen in enumerate(state.generators):
        tensors[f"generator.{i}"] = gen.get_state()
    meta = {
        "iteration": state.iteration,
        "cursors": [c.state() for c in state.cursors],
        "init": state.init_record,
        "resume_sha256": config_hash(cfg, resumable=True),
    }
    save_tensors(path, tensors, meta)


def checkpoint_iteration(out_dir: Path) -> int:
    """The iteration of `out_dir`'s checkpoint (0 when there is none or it cannot be read)."""
    try:
        return int(load_meta(Path(out_dir) / CHECKPOINT).get("iteration", 0))
    except UserError:
        return 0


def schedule_of(out_dir: Path) -> dict | None:
    """The schedule (iterations, checkpoint and eval cadence) the set in `out_dir` was made
    under, read from its header; None when there is no readable set there."""
    try:
        config = load_meta(Path(out_dir) / DISTILLED)["config"]
        return {key: config[key] for key in _SCHEDULE_KEYS}
    except (UserError, KeyError, TypeError):
        return None


def load_checkpoint(path: Path, state: State, cfg: DistillConfig) -> None:
    """Restore `state` (built by `initial_state`) from a checkpoint of the same config."""
    tensors, meta = load_tensors(path)
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise UserError(f"{path}: holds NaN or inf; delete it to start this distillation over")
    if not isinstance(meta, dict) or meta.get("resume_sha256") != config_hash(cfg, resumable=True):
        raise UserError(
            f"{path} was written by a different distillation config; "
            "use a fresh output directory or delete the checkpoint"
        )
    try:
        _restore(tensors, meta, state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(
            f"{path}: damaged checkpoint ({type(exc).__name__}: {str(exc)[:80]}); "
            "delete it to start this distillation over"
        ) from None


def _restore(tensors: dict[str, Tensor], meta: dict, state: State) -> None:
    """Copy a checkpoint's tensors and metadata into `state` (shapes must match)."""
    with torch.no_grad():
        for name in _LEARNED:
            target = getattr(state, name)
            if tensors[name].shape != target.shape:
                raise ValueError(f"{name} has shape {tuple(tensors[name].shape)}")
            target.copy_(tensors[name])
    for name, opt in state.optimizers.items():
        buf = tensors.get(f"momentum.{name}")
        if buf is not None:
            param = opt.param_groups[0]["params"][0]
            if buf.shape != param.shape:
                raise ValueError(f"momentum.{name} has shape {tuple(buf.shape)}")
            opt.state[param]["momentum_buffer"] = buf.to(param.device).clone()
    for i, gen in enumerate(state.generators):
        gen.set_state(tensors[f"generator.{i}"])
    for cursor, cursor_state in zip(state.cursors, meta["cursors"], strict=True):
        cursor.load(cursor_state)
    state.iteration = int(meta["iteration"])
    state.init_record = meta["init"]


def _validation_accuracy(
    state: State, cfg: DistillConfig, data: LongTailedData, device: torch.device
) -> float:
    """Balanced accuracy on the held-out validation split of a network trained on the set."""
    lr = eval_lr(state, cfg.eval_lr_scale)
    images, labels = state.images.detach(), state.labels.detach()
    return validation_accuracy(images, labels, lr, cfg, data, device, derive_seed(cfg.seed, 2))


def validation_accuracy(
    images: Tensor,
    labels: Tensor,
    lr: float,
    cfg: DistillConfig,
    data: LongTailedData,
    device: torch.device,
    seed: int,
) -> float:
    """Balanced accuracy on the validation split of a network (the distillation's model,
    `eval_epochs` epochs, seed `seed`) trained on the set (images, labels, lr)."""
    train_cfg = TrainConfig(
        model=cfg.model, width=cfg.width, depth=cfg.depth, norm=cfg.norm, epochs=cfg.eval_epochs
    )
    model = train_network(images, labels, lr, data.num_classes, train_cfg, seed=seed, device=device)
    pred = torch.as_tensor(predict(model, data.val_images))
    truth = data.val_labels.cpu()
    per_class = [
        float((pred[truth == c] == c).float().mean())
        for c in range(data.num_classes)
        if (truth == c).any()
    ]
    return float(np.mean(per_class))


def _metrics_lines(path: Path, upto: int) -> Iterator[str]:
    """Lines of an existing metrics file for iterations <= `upto` (what a checkpoint covers)."""
    if not path.exists():
        return
    for line in path.read_text(errors="replace").splitlines():
        try:
            keep = int(json.loads(line)["iteration"]) <= upto
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill or a full disk
            keep = False
        if keep:
            yield line


def distilled_meta(
    cfg: DistillConfig, method: Method, gradient: str, data: LongTailedData, state: State
) -> dict:
    """The `ltdd` metadata of a distilled-set file (what evaluation needs to use it)."""
    info = data.info
    return {
        "dataset": info.get("dataset"),
        "imbalance_factor": info.get("imbalance_factor"),
        "ipc": cfg.ipc,
        "method": cfg.method,
        "label_kind": method.label_kind,
        "num_classes": data.num_classes,
        "image_shape": list(data.image_shape),
        "model": {"name": cfg.model, **cfg.model_overrides()},
        "gradient": gradient,
        "iterations": state.iteration,
        "preprocessing": info.get("preprocessing"),
        "data": info,
        "init": state.init_record,
        "config": to_dict(cfg),
        "config_sha256": config_hash(cfg),
    }


def distill(
    cfg: DistillConfig,
    data: LongTailedData,
    experts: dict[str, TrajectorySource],
    out_dir: Path,
    progress: bool = True,
    device: torch.device | str = "cpu",
    meta: dict | None = None,
    on_record: Callable[[dict], None] | None = None,
) -> Path:
    """Distil `data` with `cfg.method`; resume from `out_dir`'s checkpoint; return the set's path.

    `meta` is merged into the distilled-set metadata. NaN/inf anywhere, or a learning rate
    <= 0, stops with a UserError and keeps the last good checkpoint. `on_record` is called with
    every metrics record once it is written (a tuner may raise from it to stop the run).
    """
    keep_freed_memory()
    device = torch.device(device)
    out_dir = Path(out_dir)
    out_path = out_dir / DISTILLED
    if out_path.exists() and load_tensors(out_path)[1].get("config_sha256") == config_hash(cfg):
        log.info("%s already holds this configuration's distilled set", out_path)
        return out_path
    method, gradient = resolve_method(cfg)
    if cfg.eval_every and len(data.val_labels) == 0:
        raise UserError("eval_every > 0 needs a validation split: set data.val_per_class > 0")
    student = build_student(cfg, data, device)
    plans = plan_phases(method, cfg, experts, student, data.train_counts, device)
    state = initial_state(cfg, method, data, experts, student, plans, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / INITIAL).exists():
        save_set(out_dir / INITIAL, state, cfg, method, gradient, data, meta)
    start_images = state.images.detach().clone()
    ckpt_path, metrics_path = out_dir / CHECKPOINT, out_dir / METRICS
    saved: int | None = None
    if ckpt_path.exists():
        load_checkpoint(ckpt_path, state, cfg)
        saved = state.iteration
        log.info("resuming from %s at iteration %d", ckpt_path, saved)
    lines = list(_metrics_lines(metrics_path, state.iteration))
    if cfg.eval_every and not lines:  # the validation accuracy of the iteration-0 set
        first = {"iteration": 0, "lr": eval_lr(state, cfg.eval_lr_scale)}
        first["val_balanced_accuracy"] = _validation_accuracy(state, cfg, data, device)
        lines = [json.dumps(first)]
        if on_record is not None:
            on_record(first)
    write_text(metrics_path, "".join(line + "\n" for line in lines))
    bar = tqdm(
        total=cfg.iterations,
        initial=state.iteration,
        desc=f"distill {cfg.method}",
        disable=not progress,
    )
    with bar, metrics_path.open("a") as metrics_file:
        while state.iteration < cfg.iterations:
            tick = time.perf_counter()
            try:
                record = outer_step(state, cfg, plans, student, gradient)
            except Diverged as exc:
                raise _stop(state.iteration + 1, str(exc), out_dir, saved) from None
            record["seconds"] = time.perf_counter() - tick
            record["image_change"] = image_change(state.images.detach(), start_images, cfg.ipc)
            if cfg.eval_every and state.iteration % cfg.eval_every == 0:
                record["val_balanced_accuracy"] = _validation_accuracy(state, cfg, data, device)
            metrics_file.write(json.dumps(record) + "\n")
            tracking.log_iteration(cfg.method, record, state.images, data)
            metrics_file.flush()
            if on_record is not None:
                on_record(record)
            if state.iteration % cfg.checkpoint_every == 0 or state.iteration == cfg.iterations:
                save_checkpoint(ckpt_path, state, cfg)
                saved = state.iteration
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.4g}")
    save_set(out_path, state, cfg, method, gradient, data, meta)
    return out_path


def save_set(
    path: Path,
    state: State,
    cfg: DistillConfig,
    method: Method,
    gradient: str,
    data: LongTailedData,
    meta: dict | None,
) -> None:
    """Write the current set in the distilled-set format (scalar `lr`: `eval_lr`)."""
    classes = torch.arange(data.num_classes).repeat_interleave(cfg.ipc)  # class-contiguous blocks
    tensors = {
        "images": state.images,
        "labels": state.labels,
        "lr": torch.tensor(eval_lr(state, cfg.eval_lr_scale)),
        "classes": classes,
    }
    extra = {"phase_lr": state.lr.detach().cpu().reshape(-1).tolist()}
    save_tensors(
        path,
        tensors,
        {**distilled_meta(cfg, method, gradient, data, state), **extra, **(meta or {})},
    )


def image_change(images: Tensor, start: Tensor, ipc: int) -> list[float]:
    """Per class (class-contiguous blocks of `ipc`), ||X_t - X_0|| / ||X_0|| (Frobenius)."""
    diff = (images - start).reshape(-1, ipc, *images.shape[1:]).flatten(1)
    base = start.reshape(-1, ipc, *images.shape[1:]).flatten(1)
    return (diff.norm(dim=1) / base.norm(dim=1).clamp_min(1e-12)).cpu().tolist()
