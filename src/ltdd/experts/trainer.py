"""Vectorised training of a group of K experts with `torch.func`.

One model object; K experts are K rows of a stacked (K, P) flat parameter tensor, trained by
`vmap` of one expert's step (`grad` of the cross-entropy through `functional_forward`, optional
GSAM, SGD, optional MaxNorm). Each expert has its own generators, derived from (seed, expert
index) only, for initialisation, batch order and DSA draws, so a trajectory does not depend on
how experts are grouped or which process trains them. DSA is applied per expert outside `vmap`.
For classifier experts only the classifier slice is an argument of `grad`: no backbone
parameter gradient is ever computed, and the backbone stays bit-identical. Since the backbone is
frozen and GSAM perturbs only the classifier, its features are computed once per step without a
graph (`features`), and the step (both GSAM gradients) runs on the classifier alone. With
`compile: true` that forward runs through `torch.compile` (`ltdd.models.compiled`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad_and_value, vmap
from tqdm import tqdm

from ltdd.allocator import keep_freed_memory
from ltdd.data.augment import dsa
from ltdd.errors import UserError
from ltdd.evaluate.metrics import classification_report
from ltdd.experts import gsam, maxnorm
from ltdd.experts.checkpoint import GroupCheckpoint, GroupState
from ltdd.experts.config import ExpertsConfig, model_overrides
from ltdd.experts.optim import sgd_step
from ltdd.experts.sampler import SAMPLERS
from ltdd.models import create_model
from ltdd.models.compiled import CompiledForShape
from ltdd.models.functional import ParamLayout, functional_forward

_EVAL_BATCH = 1024


def _derive(*parts: object) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def expert_seed(seed: int, index: int) -> int:
    """The seed of expert `index` of a run seeded with `seed` (independent of grouping)."""
    return _derive("ltdd-expert", seed, index)


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for one purpose ("init", "batch", "dsa") of one expert."""
    return torch.Generator().manual_seed(_derive(seed, purpose))


class Engine:
    """The model, its flat layout and the vmapped training step for one resolved config."""

    def __init__(
        self,
        cfg: ExpertsConfig,
        num_classes: int,
        image_shape: tuple[int, int, int],
        device: torch.device,
    ) -> None:
        keep_freed_memory()
        self.cfg = cfg
        self.num_classes = num_classes
        self.image_shape = image_shape
        self.device = device
        self.model = self.build_model(seed=0).to(device)
        if any(True for _ in self.model.buffers()):
            raise UserError(
                f"model {cfg.model!r} has buffers (batch norm); experts are trained as K "
                "functional copies, which needs a buffer-free model: use norm=instance or none"
            )
        self.layout = ParamLayout.from_module(self.model)
        self.start = self.layout.classifier_start if cfg.trains_classifier_only else 0
        self.first_trainable = self.layout.offsets.index(self.start)
        weight = self.layout.names.index("classifier.weight")
        self.weight_slice = slice(
            self.layout.offsets[weight] - self.start,
            self.layout.offsets[weight] + self.layout.numels[weight] - self.start,
        )
        self.weight_shape = self.layout.shapes[weight]
        self.head_only = cfg.trains_classifier_only
        self._loss_fn = self._head_loss if self.head_only else self._loss
        self._vstep = vmap(partial(self._update, grad_and_value(self._loss_fn)))
        self._features: Callable[[Tensor, Tensor], Tensor] = vmap(self._body)
        self._single: Callable[[Tensor, Tensor], Tensor] = self._body
        if cfg.compile:
            self._features = CompiledForShape(self._features, "the experts' backbone (vmapped)")
            self._single = CompiledForShape(self._body, "the expert's backbone")

    def build_model(self, seed: int) -> torch.nn.Module:
        """A fresh module of the configured architecture, initialised from `seed`."""
        cfg = self.cfg
        return create_model(
            cfg.model, self.num_classes, self.image_shape, seed=seed, **model_overrides(cfg)
        )

    def init_params(self, seed: int) -> Tensor:
        """Flat (P,) default initialisation of the expert with seed `seed`."""
        init_seed = _derive(seed, "init")
        return self.layout.flatten(self.build_model(seed=init_seed)).to(self.device)

    def _loss(self, trainable: Tensor, frozen: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy; the frozen and trainable slices are split into parameters separately,
        so no backbone parameter is a view of `trainable` and autograd never reaches it."""
        numels = self.layout.numels
        first = self.first_trainable
        pieces = [*torch.split(frozen, numels[:first]), *torch.split(trainable, numels[first:])]
        params = {
            name: piece.view(shape)
            for name, piece, shape in zip(
                self.layout.names, pieces, self.layout.shapes, strict=True
            )
        }
        return F.cross_entropy(functional_call(self.model, params, (x,)), y)

    def _named(self, flat: Tensor, first: int, last: int, prefix: str) -> dict[str, Tensor]:
        """Parameters `first..last-1` of the layout as views of `flat`, names without `prefix`."""
        pieces = torch.split(flat, self.layout.numels[first:last])
        names, shapes = self.layout.names[first:last], self.layout.shapes[first:last]
        if not all(name.startswith(prefix) for name in names):
            raise ValueError(f"parameters {names} do not all start with {prefix!r}")
        return {
            name[len(prefix) :]: piece.view(shape)
            for name, piece, shape in zip(names, pieces, shapes, strict=True)
        }

    def _body(self, frozen: Tensor, x: Tensor) -> Tensor:
        """Penultimate features `body(x).flatten(1)` with backbone parameters from `frozen`."""
        params = self._named(frozen, 0, self.first_trainable, "body.")
        return functional_call(self.model.body, params, (x,)).flatten(1)

    def _head_loss(self, trainable: Tensor, frozen: Tensor, feats: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy of the classifier alone on precomputed features (`frozen` unused)."""
        params = self._named(trainable, self.first_trainable, len(self.layout.names), "classifier.")
        return F.cross_entropy(functional_call(self.model.classifier, params, (feats,)), y)

    def step(
        self, w: Tensor, frozen: Tensor, buf: Tensor, tau: Tensor, x: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One update of every expert: (K, ...) stacked states, images (K, B, C, H, W).

        K > 1 runs the vmapped step; K = 1 runs the same update with plain autograd, which on
        a CPU is 1.4-1.8x faster than `torch.func.grad` (whose group-norm backward is a slow
        decomposition) and agrees with it to float rounding (tests/test_experts_gsam.py).
        """
        if self.head_only:
            x = self.features(frozen, x)
        if len(w) > 1:
            return self._vstep(w, frozen, buf, tau, x, y)
        out = self._update(self._autograd, w[0], frozen[0], buf[0], tau[0], x[0], y[0])
        return tuple(t.unsqueeze(0) for t in out)  # type: ignore[return-value]

    @torch.no_grad()
    def features(self, frozen: Tensor, x: Tensor) -> Tensor:
        """(K, B, F) backbone features of (K, B, C, H, W) images, K backbones (K, start), no
        graph; compiled with `compile: true`."""
        if len(frozen) > 1:
            return self._features(frozen, x)
        return self._single(frozen[0], x[0]).unsqueeze(0)

    def _autograd(self, w: Tensor, frozen: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(gradient, loss) of one expert's loss in its trainable slice, by plain autograd."""
        leaf = w.detach().requires_grad_()
        loss = self._loss_fn(leaf, frozen, x, y)
        (g,) = torch.autograd.grad(loss, leaf)
        return g, loss.detach()

    def _update(
        self,
        grad_fn: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
        w: Tensor,
        frozen: Tensor,
        buf: Tensor,
        tau: Tensor,
        x: Tensor,
        y: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One expert's update: gradient, GSAM, SGD, MaxNorm.

        `x` is a batch of images, or of backbone features for classifier experts."""
        cfg = self.cfg
        g, loss = grad_fn(w, frozen, x, y)
        if cfg.gsam:
            e = gsam.perturbation(w, g, cfg.rho, cfg.adaptive)
            perturbed = w + e
            g_s, _ = grad_fn(perturbed, frozen, x, y)
            g = gsam.decompose(g, g_s, cfg.gsam_alpha)
            w = perturbed - e  # the reference restores w in place: (w + e) − e
        w, buf = sgd_step(w, g, buf, cfg.lr, cfg.momentum, cfg.weight_decay)
        if cfg.maxnorm:
            part = self.weight_slice
            weight = w[part].view(self.weight_shape)
            tau = torch.where(tau.isnan(), maxnorm.row_threshold(weight, cfg.maxnorm_thresh), tau)
            weight = maxnorm.project_rows(weight, tau)
            w = torch.cat([w[: part.start], weight.reshape(-1), w[part.stop :]])
        return w, buf, tau, loss

    def fresh_state(self, init: Tensor, seeds: list[int], labels: Tensor) -> GroupState:
        """Epoch-0 state of a group: `init` (K, P) and fresh generators and samplers."""
        cfg = self.cfg
        sampler_cls = SAMPLERS.get(cfg.sampler)
        trainable = init.shape[1] - self.start
        return GroupState(
            epoch=0,
            params=init.clone(),
            momentum=torch.zeros(len(seeds), trainable, device=self.device),
            tau=torch.full((len(seeds),), float("nan"), device=self.device),
            batch_generators=[generator(s, "batch") for s in seeds],
            dsa_generators=[generator(s, "dsa") for s in seeds],
            samplers=[sampler_cls(labels, cfg.batch_size, cfg.num_samples_cls) for _ in seeds],
        )

    def train_epoch(self, state: GroupState, images: Tensor, labels: Tensor) -> Tensor:
        """One epoch for every expert of the group; returns the (K,) mean training loss."""
        frozen = state.params[:, : self.start]
        w = state.params[:, self.start :]
        plans = [s.epoch(g) for s, g in zip(state.samplers, state.batch_generators, strict=True)]
        total = torch.zeros(len(plans), device=self.device)
        for batches in zip(*plans, strict=True):
            xs, ys = [], []
            for idx, gen in zip(batches, state.dsa_generators, strict=True):
                idx = idx.to(images.device)
                x = images[idx]
                xs.append(dsa(x, gen) if self.cfg.dsa else x)
                ys.append(labels[idx])
            w, state.momentum, state.tau, loss = self.step(
                w, frozen, state.momentum, state.tau, torch.stack(xs), torch.stack(ys)
            )
            total += loss.detach()
        state.params = torch.cat([frozen, w.detach()], dim=1)
        state.epoch += 1
        return total / len(plans[0])

    @torch.no_grad()
    def evaluate(
        self, flat: Tensor, images: Tensor, labels: Tensor, train_counts: list[int]
    ) -> dict:
        """classification_report of one expert's flat parameters on a test set."""
        preds = [
            functional_forward(self.model, self.layout, flat, images[i : i + _EVAL_BATCH]).argmax(1)
            for i in range(0, len(images), _EVAL_BATCH)
        ]
        return classification_report(
            labels.cpu().numpy(), torch.cat(preds).cpu().numpy(), self.num_classes, train_counts
        )


def train_group(
    engine: Engine,
    checkpoint: GroupCheckpoint,
    fresh: Callable[[], GroupState],
    images: Tensor,
    labels: Tensor,
    progress: bool,
) -> Tensor:
    """Train one group to the last epoch, resuming from `checkpoint`; returns final (K, P) params.

    `fresh` builds the epoch-0 state (called once; its generators and samplers receive the
    saved states when a checkpoint exists).
    """
    cfg = engine.cfg
    start = fresh()
    state = checkpoint.load(start)
    if state is None:
        state = start
        if 0 in cfg.save_epochs:
            checkpoint.save_snapshot(0, state.params, cfg.dtype)
        checkpoint.save(state)
    experts = checkpoint.experts
    bar = tqdm(
        total=cfg.epochs,
        initial=state.epoch,
        desc=f"{cfg.kind} experts {experts[0]}-{experts[-1]}",
        unit="epoch",
        disable=not progress,
    )
    with bar:
        while state.epoch < cfg.epochs:
            loss = engine.train_epoch(state, images, labels)
            if state.epoch in cfg.save_epochs:
                checkpoint.save_snapshot(state.epoch, state.params, cfg.dtype)
            checkpoint.save(state)
            bar.set_postfix(loss=f"{loss.mean().item():.4f}")
            bar.update(1)
    return state.params
