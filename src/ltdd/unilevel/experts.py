"""Train the debiased observer/teacher (spec §1.2) into a store beside the trajectory experts.

Store layout (`<run>/experts/unilevel/`), following `ltdd.experts.store`'s conventions:
`expert_0000.safetensors` (the full state dict: parameters and BN buffers, which recalibration
and recovery need), `metrics.jsonl` (balanced and head/medium/tail test accuracy per epoch) and
`manifest.json` (format, resolved config, config hash, data fingerprint, per expert file, sha256,
seed, final metrics), written atomically and last. Training resumes from `.partial/` state saved
after every epoch; a store of another configuration is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ltdd.config import to_dict
from ltdd.data.augment import DSAConfig, dsa
from ltdd.data.dataset import LongTailedData
from ltdd.errors import UserError
from ltdd.evaluate.metrics import classification_report
from ltdd.evaluate.trainer import predict
from ltdd.experts.config import canonical_hash
from ltdd.experts.run import data_fingerprint
from ltdd.io import load_tensors, read_json, save_tensors, sha256_file, write_json, write_text
from ltdd.unilevel.config import DebiasExpertConfig
from ltdd.unilevel.losses import class_weights, cumulative_alpha, debias_loss, robust_loss
from ltdd.unilevel.mixing import cutmix, cutmix_box, mixed_target, mixup, sample_lambda
from ltdd.unilevel.network import DebiasedNet, build_debiased_net

log = logging.getLogger("ltdd")
FORMAT = "ltdd-unilevel-experts/1"
MANIFEST = "manifest.json"
_CROP, _FLIP = DSAConfig(strategy="crop"), DSAConfig(strategy="flip")


def expert_file(index: int) -> str:
    return f"expert_{index:04d}.safetensors"


def num_experts(cfg: DebiasExpertConfig) -> int:
    """1 when observer and teacher are the same network, else 2 (observer 0, teacher 1)."""
    return 1 if cfg.share_observer_teacher else 2


def store_hash(cfg: DebiasExpertConfig, data: LongTailedData) -> str:
    return canonical_hash(
        {"format": FORMAT, "config": to_dict(cfg), "data": data_fingerprint(data)}
    )


def new_net(cfg: DebiasExpertConfig, data: LongTailedData, seed: int) -> DebiasedNet:
    return build_debiased_net(
        cfg.model,
        data.num_classes,
        data.image_shape,
        width=cfg.width,
        depth=cfg.depth,
        proj_dim=cfg.proj_dim,
        two_heads=cfg.heads == "two",
        seed=seed,
    )


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Standard crop-with-padding (±4 px on 28-32 px) and horizontal flip."""
    return dsa(dsa(x, gen, _CROP), gen, _FLIP)


def _step_loss(
    net: DebiasedNet,
    cfg: DebiasExpertConfig,
    batch: tuple,
    weights: torch.Tensor,
    alpha: float,
    gen: torch.Generator,
    num_classes: int,
) -> torch.Tensor:
    x, y, x2, y2 = batch
    if not cfg.debias:  # the "w/o debiasing" ablation: plain CE on augmented images
        plain, balanced, _, _ = net.views(_augment(x, gen))
        loss = F.cross_entropy(plain, y)
        return loss + (F.cross_entropy(balanced, y) if balanced is not None else 0.0)
    lam = sample_lambda(gen)
    a1, a2, b1, b2 = (_augment(v, gen) for v in (x, x, x2, x2))
    box = cutmix_box(x.shape[2], x.shape[3], lam, gen)
    target = mixed_target(y, y2, lam, num_classes)
    l1, bl1, z1, p1 = net.views(mixup(a1, b1, lam))
    l2, bl2, z2, p2 = net.views(cutmix(a2, b2, box))
    cls = debias_loss(l1, target, weights, alpha, bl1) + debias_loss(
        l2, target, weights, alpha, bl2
    )
    return cfg.gamma_debias * cls + cfg.gamma_robust * robust_loss(z1, z2, p1, p2, cfg.robust_form)


def validation_accuracy(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Balanced accuracy (mean per-class recall over the classes present) on a validation set."""
    pred = torch.as_tensor(predict(net, images))
    present = torch.unique(labels)
    return float(torch.stack([(pred[labels == c] == c).float().mean() for c in present]).mean())


def evaluate_net(net: torch.nn.Module, data: LongTailedData) -> dict:
    """Balanced test accuracy, per-class and head/medium/tail accuracy (fractions)."""
    report = classification_report(
        data.test_labels.numpy(),
        predict(net, data.test_images),
        data.num_classes,
        data.train_counts,
    )
    groups = {g: (v["accuracy"] if v else None) for g, v in report["groups"].items()}
    return {
        "accuracy": report["accuracy"],
        "per_class_accuracy": report["per_class_accuracy"],
        **groups,
    }


def _second_loader_weights(labels: torch.Tensor, counts: list[int], rho: float) -> torch.Tensor:
    """Sample weights n_c^(−ρ): class c is drawn with probability ∝ n_c^(1−ρ)."""
    return torch.as_tensor(counts, dtype=torch.float64)[labels].pow(-rho)


def train_debiased_expert(
    cfg: DebiasExpertConfig,
    data: LongTailedData,
    folder: Path,
    index: int,
    device: torch.device,
    progress: bool = True,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DebiasedNet:
    """Train (or resume) expert `index` with γ1·L_robust + γ2·L_debias; returned in eval mode.

    With `validation` (images, labels) each epoch's row of metrics.jsonl also holds
    `val_accuracy` (balanced), the number to choose the epoch count on (never the test columns).
    """
    seed = cfg.seed * 1000 + index
    net = new_net(cfg, data, seed).to(device)
    opt = torch.optim.SGD(
        net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    gen = torch.Generator().manual_seed(seed + 1)
    partial = folder / ".partial" / f"expert_{index:04d}.safetensors"
    start = 0
    if partial.is_file():
        tensors, meta = load_tensors(partial)
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        opt.load_state_dict(meta["opt"] | {"state": _opt_state(tensors)})
        gen.set_state(tensors["rng"])
        start = meta["epoch"]
        log.info("expert %d: resuming after epoch %d", index, start)
    images, labels = data.train_images.to(device), data.train_labels.to(device)
    n, bs = len(images), cfg.batch_size
    steps = math.ceil(n / bs)
    total = cfg.epochs * steps
    weights = class_weights(data.train_counts, cfg.q, cfg.weight_norm).to(device)
    second = _second_loader_weights(data.train_labels, data.train_counts, cfg.resample_rho)
    metrics_path = folder / "metrics.jsonl"
    for epoch in tqdm(
        range(start, cfg.epochs),
        desc=f"unilevel expert {index}",
        initial=start,
        total=cfg.epochs,
        disable=None if progress else True,
    ):
        net.train()
        order = torch.randperm(n, generator=gen)
        other = (
            torch.randperm(n, generator=gen)
            if cfg.resample_rho == 0
            else torch.multinomial(second, n, replacement=True, generator=gen)
        )
        for s in range(steps):
            t = epoch * steps + s
            for group in opt.param_groups:
                group["lr"] = 0.5 * cfg.lr * (1 + math.cos(math.pi * t / total))
            idx, idx2 = order[s * bs : (s + 1) * bs], other[s * bs : (s + 1) * bs]
            if len(idx) < 2:
                continue
            alpha = cumulative_alpha(
                t if cfg.alpha_granularity == "iteration" else epoch,
                total if cfg.alpha_granularity == "iteration" else cfg.epochs,
            )
            batch = (images[idx], labels[idx], images[idx2], labels[idx2])
            loss = _step_loss(net, cfg, batch, weights, alpha, gen, data.num_classes)
            if not torch.isfinite(loss):
                raise UserError(f"unilevel expert {index}: loss became {loss.item()} at step {t}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        metrics = {"expert": index, "epoch": epoch + 1, **evaluate_net(net.eval(), data)}
        if validation is not None:
            metrics["val_accuracy"] = validation_accuracy(net, *validation)
        _save_partial(partial, net, opt, gen, epoch + 1)
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        log.info(
            "unilevel expert %d epoch %d: balanced %.4f, head %.4f, tail %.4f",
            index, epoch + 1, metrics["accuracy"], metrics["head"] or 0, metrics["tail"] or 0,
        )  # fmt: skip
    return net.eval()


def _opt_state(tensors: dict) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, param, name = key.split(".")
            state.setdefault(int(param), {})[name] = value
    return state


def _save_partial(path: Path, net: DebiasedNet, opt, gen: torch.Generator, epoch: int) -> None:
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    sd = opt.state_dict()
    for param, values in sd["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"opt.{param}.{name}"] = value
    tensors["rng"] = gen.get_state()
    save_tensors(path, tensors, {"epoch": epoch, "opt": {"param_groups": sd["param_groups"]}})


def ensure_experts(
    cfg: DebiasExpertConfig,
    data: LongTailedData,
    folder: Path,
    device: torch.device,
    progress: bool = True,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Path:
    """Train the store's experts unless `folder` already holds them for this config and data.

    `validation` (images, labels) adds a balanced validation accuracy to every epoch's metrics.
    """
    folder = Path(folder)
    key = store_hash(cfg, data)
    manifest = folder / MANIFEST
    if manifest.is_file():
        if read_json(manifest).get("config_hash") == key:
            return folder
        raise UserError(
            f"{folder}: holds unilevel experts of another configuration; "
            "use another folder or delete this one"
        )
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / ".partial" / "config_hash"
    if stamp.is_file() and stamp.read_text() != key:
        raise UserError(
            f"{folder}: an interrupted run of another configuration is in it; delete it"
        )
    write_text(stamp, key)
    entries = []
    for index in range(num_experts(cfg)):
        path = folder / expert_file(index)
        if not path.is_file():
            net = train_debiased_expert(cfg, data, folder, index, device, progress, validation)
            metrics = evaluate_net(net, data)
            meta = {"index": index, "seed": cfg.seed * 1000 + index, "config_hash": key}
            save_tensors(path, net.state_dict(), {**meta, "metrics": metrics})
        _, meta = load_tensors(path)
        entries.append(
            {
                "index": index,
                "file": path.name,
                "sha256": sha256_file(path),
                "seed": meta["seed"],
                "metrics": meta["metrics"],
                "role": _role(cfg, index),
            }
        )
    header = {
        "format": FORMAT,
        "kind": "unilevel",
        "config": to_dict(cfg),
        "config_hash": key,
        "data_fingerprint": data_fingerprint(data),
        "train_counts": list(data.train_counts),
    }
    write_json(manifest, {**header, "experts": entries})
    for leftover in (folder / ".partial").glob("*"):
        leftover.unlink()
    (folder / ".partial").rmdir()
    return folder


def _role(cfg: DebiasExpertConfig, index: int) -> str:
    if cfg.share_observer_teacher:
        return "observer+teacher"
    return "observer" if index == 0 else "teacher"


def load_expert(folder: Path, role: str, data: LongTailedData, device: torch.device) -> DebiasedNet:
    """The observer (`role="observer"`) or teacher of a finished store, in eval mode."""
    manifest = read_json(Path(folder) / MANIFEST)
    if manifest.get("format") != FORMAT:
        raise UserError(f"{folder}: not a unilevel expert store (expected format {FORMAT})")
    cfg = DebiasExpertConfig(
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in manifest["config"].items()
            if k in {f.name for f in dataclasses.fields(DebiasExpertConfig)}
        }
    )
    index = 0 if role == "observer" or cfg.share_observer_teacher else 1
    entry = manifest["experts"][index]
    path = Path(folder) / entry["file"]
    if sha256_file(path) != entry["sha256"]:
        raise UserError(f"{path}: sha256 differs from manifest.json; delete the store and retrain")
    tensors, _ = load_tensors(path)
    net = new_net(cfg, data, entry["seed"])
    net.load_state_dict(tensors)
    return net.to(device).eval()


def per_epoch_metrics(folder: Path) -> list[dict]:
    """The rows of `metrics.jsonl` (one per expert and epoch)."""
    path = Path(folder) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
