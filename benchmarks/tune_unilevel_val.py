"""Choose the shared-protocol learning rate and label temperature of teacher-labelled sets on a
validation set, never on the test set.

Validation = 100 Fashion-MNIST *training* images per class that the long-tailed subset does not
use (balanced, disjoint from the test set), preprocessed like the training data; class 0 (used
whole by the subset) takes 100 of its LT training images that the tuned set does not contain.
One evaluation seed per candidate; writes runs/bench-unilevel/tune.json.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ltdd.config import load_config
from ltdd.data.dataset import prepare_data, split_longtail
from ltdd.data.sources import load_source
from ltdd.distilled import DistilledSet
from ltdd.evaluate.trainer import predict, train_network
from ltdd.io import write_json
from ltdd.pipeline.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent


def validation_set(cfg, data, exclude: list[int], per_class: int = 100):
    """Unused training images; a class the subset uses whole (the head) takes LT training images
    that no evaluated set contains (`exclude`: positions in the LT training split)."""
    source = load_source(cfg.data.dataset, cfg.data.root)
    train_indices = split_longtail(source, cfg.data).train_indices
    used = set(train_indices.tolist())
    in_sets = set(train_indices[exclude].tolist())
    rng = np.random.default_rng(12345)
    picks = []
    for c in range(data.num_classes):
        members = np.flatnonzero(source.train_labels == c)
        free = [i for i in members if i not in used]
        if len(free) < per_class:
            free = [i for i in members if i not in in_sets]
        picks += list(rng.choice(free, per_class, replace=False))
    picks = np.sort(np.array(picks))
    images = data.preprocessing.transform(source.train_images[picks])
    return images, torch.as_tensor(source.train_labels[picks].astype(np.int64))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("set", type=Path)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--beta", type=float, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench-unilevel/tune.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    cfg = load_config(
        RunConfig, ROOT / "configs/run/unilevel-fmnist.yaml", [f"data.imbalance_factor={args.beta}"]
    )
    data = prepare_data(cfg.data)
    s = DistilledSet.load(args.set)
    val_x, val_y = validation_set(cfg, data, list(s.meta["unilevel"]["source_indices"]))
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for t in args.temperatures:
        for lr in args.lrs:
            key = f"{args.set.name} lr={lr:g} T={t:g}"
            if key in results:
                continue
            model = train_network(
                s.images, s.labels / t, lr, 10, cfg.evaluate.train, 0, torch.device("cpu")
            )
            pred = predict(model, val_x)
            per_class = [float((pred[val_y.numpy() == c] == c).mean()) for c in range(10)]
            results[key] = {"val_balanced_accuracy": float(np.mean(per_class)), "lr": lr, "T": t}
            write_json(args.out, results)
            logging.info("%s: %.4f", key, results[key]["val_balanced_accuracy"])


if __name__ == "__main__":
    main()
