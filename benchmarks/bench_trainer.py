"""Throughput of the evaluation trainer against a plain DataLoader training loop (same run).

Both train the same ConvNet with the same DSA and optimiser on Fashion-MNIST-LT images; the
plain loop is what a user would write first: TensorDataset + shuffled DataLoader, one DSA call
per batch, `optimizer.zero_grad()`, backward, step.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from ltdd.data.augment import dsa
from ltdd.data.dataset import DataConfig, prepare_data
from ltdd.device import resolve_device
from ltdd.evaluate.trainer import TrainConfig, build_model, label_loss, train_network
from ltdd.io import write_text

from common import RESULTS, header


def plain_loop(images, labels, cfg: TrainConfig, seed: int, device: torch.device) -> None:
    model = build_model(cfg, 10, tuple(images.shape[1:]), seed, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(images, labels), batch_size=cfg.batch_size, shuffle=True, generator=gen
    )
    for _ in range(cfg.epochs + 1):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = label_loss(model(dsa(x, gen)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()


def timed(fn, *args, device: torch.device) -> float:
    start = time.perf_counter()
    fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 2048])
    parser.add_argument(
        "--images-per-setting",
        type=int,
        default=6000,
        help="images processed per timing (sets the number of epochs)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i>")
    parser.add_argument("--name", default="trainer", help="results/<name>.md")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = prepare_data(DataConfig(imbalance_factor=100))
    warm = TrainConfig(width=args.widths[0], epochs=2)  # one-time allocator/oneDNN set-up, untimed
    x, y = data.train_images[:256], data.train_labels[:256]
    train_network(x, y, 0.01, 10, warm, 0, device)
    plain_loop(x, y, warm, 0, device)
    rows = []
    for width in args.widths:
        for size in args.sizes:
            idx = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(0))
            x, y = data.train_images[idx[:size]], data.train_labels[idx[:size]]
            epochs = max(1, args.images_per_setting // size - 1)
            cfg = TrainConfig(width=width, epochs=epochs)
            seen = size * (epochs + 1)
            ours = timed(train_network, x, y, 0.01, 10, cfg, 0, device, device=device)
            plain = timed(plain_loop, x, y, cfg, 0, device, device=device)
            rows.append((width, size, seen / ours, seen / plain))
            print(rows[-1], flush=True)
    lines = [
        header("Evaluation trainer throughput, Fashion-MNIST-LT β=100"),
        "",
        "Training images per second (forward + backward + DSA + SGD step), batch 128.",
        "",
        "| width | set size | ltdd trainer (img/s) | plain DataLoader loop (img/s) | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {w} | {n} | {a:.0f} | {b:.0f} | {a / b:.2f}× |" for w, n, a, b in rows]
    write_text(RESULTS / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
