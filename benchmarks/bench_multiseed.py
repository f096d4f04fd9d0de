"""Training the K evaluation seeds of one set at once, against one after the other (issue 10).

The evaluation recipe (`ltdd.evaluate.trainer.train_network`: SGD with momentum and weight
decay, learning rate / 10 and a fresh optimiser from pass `epochs // 2 + 1`, DSA on every batch)
is run for K seeds in three ways:

- `sequential`: `train_network` once per seed (what evaluation does);
- `vmap`: the K networks as one stacked (K, P) flat parameter tensor, one step by
  `vmap(grad(loss of functional_call))` as the expert trainer does for K experts, then SGD on the
  stacked tensors (`ltdd.experts.optim.sgd_step`);
- `packed`: the K ConvNets packed into one network by hand (convolutions with `groups=K`,
  instance norm over K x width channels, one batched matrix product for the classifiers), plain
  autograd and one SGD over the packed parameters. ConvNet only; the fastest layout found.

Each seed's run in the vectorised modes is the same computation as `train_network` with that
seed: the same initial weights (`build_model(seed)`), the same batch order and DSA draws (one
generator per seed, seeded `seed + 1`, drawing in the same order, DSA applied per seed outside
the vectorised step). The agreement check trains a tiny problem both ways and reports the
largest difference of the final weights (grouped convolutions round differently, so they are
not bit-identical).

Timing: for each (width, K), rounds alternate the three modes in one process; each mode trains
K networks for `--passes` passes of 100 images (one step per pass, as IPC 10 at batch 128), and
the CPU seconds (process_time; one torch thread) per seed-step are reported with their ratio to
`sequential`. A full evaluation seed at the CPU profile is 301 such steps.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_multiseed.py --out multiseed
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap

from ltdd.allocator import keep_freed_memory
from ltdd.data.augment import DSAConfig, dsa
from ltdd.evaluate.trainer import TrainConfig, build_model, label_loss, train_network
from ltdd.experts.optim import sgd_step
from ltdd.models.functional import ParamLayout

sys.path.insert(0, str(Path(__file__).parent))
from bench_speed import cpu_description  # noqa: E402

from common import RESULTS, command, provenance  # noqa: E402

SHAPE, CLASSES, CPU = (1, 28, 28), 10, torch.device("cpu")
Step = Callable[[Tensor, Tensor, float], None]
"""One vectorised update of every seed from images (K, B, ...) and labels (K, B[, C])."""


def _vmap_engine(models: list[torch.nn.Module], cfg: TrainConfig) -> tuple[Step, Callable]:
    """(step, final flat weights (K, P)) of K networks as a stacked flat tensor under vmap."""
    layout = ParamLayout.from_module(models[0])
    state = {"w": torch.stack([layout.flatten(m) for m in models])}
    state["buf"] = torch.zeros_like(state["w"])

    def loss(w: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return label_loss(functional_call(models[0], layout.unflatten(w), (x,)), y)

    grads = vmap(grad(loss))

    def step(x: Tensor, y: Tensor, lr: float) -> None:
        g = grads(state["w"], x, y)
        state["w"], state["buf"] = sgd_step(
            state["w"], g, state["buf"], lr, cfg.momentum, cfg.weight_decay
        )

    def reset() -> None:
        state["buf"] = torch.zeros_like(state["w"])

    step.reset = reset  # type: ignore[attr-defined]
    return step, lambda: state["w"]


def _packed_engine(models: list[torch.nn.Module], cfg: TrainConfig) -> tuple[Step, Callable]:
    """(step, final flat weights (K, P)) of K ConvNets packed into one grouped network."""
    k = len(models)
    blocks = [list(m.body) for m in models]
    depth = len(blocks[0]) // 4
    params: list[Tensor] = []
    for i in range(depth):
        conv, norm = [b[4 * i] for b in blocks], [b[4 * i + 1] for b in blocks]
        for tensors in (
            [c.weight for c in conv],
            [c.bias for c in conv],
            [n.weight for n in norm],
            [n.bias for n in norm],
        ):
            params.append(torch.cat([t.detach() for t in tensors]).requires_grad_())
    params.append(torch.stack([m.classifier.weight.detach() for m in models]).requires_grad_())
    params.append(torch.stack([m.classifier.bias.detach() for m in models]).requires_grad_())
    padding = [blocks[0][4 * i].padding for i in range(depth)]
    opt = {"sgd": None}

    def forward(x: Tensor) -> Tensor:
        batch = x.shape[1]
        h = x.transpose(0, 1).reshape(batch, k * x.shape[2], *x.shape[3:])
        for i in range(depth):
            h = F.conv2d(h, params[4 * i], params[4 * i + 1], padding=padding[i], groups=k)
            h = F.group_norm(h, h.shape[1], params[4 * i + 2], params[4 * i + 3])
            h = F.avg_pool2d(F.relu(h), 2)
        feats = h.reshape(batch, k, -1).transpose(0, 1)
        return torch.baddbmm(params[-1].unsqueeze(1), feats, params[-2].transpose(1, 2))

    def step(x: Tensor, y: Tensor, lr: float) -> None:
        if opt["sgd"] is None:
            opt["sgd"] = torch.optim.SGD(
                params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        out = forward(x)
        loss = sum(label_loss(out[i], y[i]) for i in range(k))
        opt["sgd"].zero_grad(set_to_none=True)
        loss.backward()
        opt["sgd"].step()

    def reset() -> None:
        opt["sgd"] = None

    def flat() -> Tensor:
        per_seed = []
        for s in range(k):
            pieces = []
            for i in range(depth):
                width = params[4 * i].shape[0] // k
                rows = slice(s * width, (s + 1) * width)
                pieces += [t[rows].detach().reshape(-1) for t in params[4 * i : 4 * i + 4]]
            pieces += [params[-2][s].detach().reshape(-1), params[-1][s].detach()]
            per_seed.append(torch.cat(pieces))
        return torch.stack(per_seed)

    step.reset = reset  # type: ignore[attr-defined]
    return step, flat


ENGINES = {"vmap": _vmap_engine, "packed": _packed_engine}


def train_seeds(
    images: Tensor, labels: Tensor, lr: float, cfg: TrainConfig, seeds: list[int], mode: str
) -> Tensor:
    """Final flat weights (K, P) of `train_network`'s recipe for every seed, vectorised."""
    models = [build_model(cfg, CLASSES, tuple(images.shape[1:]), s, CPU) for s in seeds]
    step, final = ENGINES[mode](models, cfg)
    gens = [torch.Generator().manual_seed(s + 1) for s in seeds]
    dsa_config = DSAConfig() if cfg.dsa else DSAConfig(strategy="none")
    decay_at, rate = cfg.epochs // 2 + 1, lr
    for epoch in range(cfg.epochs + 1):
        if epoch == decay_at:
            rate = lr * 0.1
            step.reset()  # type: ignore[attr-defined]  # a fresh optimiser: momentum reset
        orders = [torch.randperm(len(images), generator=g) for g in gens]
        for start in range(0, len(images), cfg.batch_size):
            batches = [o[start : start + cfg.batch_size] for o in orders]
            xs = [dsa(images[b], g, dsa_config) for b, g in zip(batches, gens, strict=True)]
            step(torch.stack(xs), torch.stack([labels[b] for b in batches]), rate)
    return final()


def sequential(images: Tensor, labels: Tensor, lr: float, cfg: TrainConfig, seeds: list[int]):
    """Final flat weights (K, P) of `train_network` run once per seed."""
    nets = [train_network(images, labels, lr, CLASSES, cfg, s, CPU) for s in seeds]
    layout = ParamLayout.from_module(nets[0])
    return torch.stack([layout.flatten(n) for n in nets])


def agreement(seeds: int) -> list[dict]:
    """Largest |difference| of final weights, vectorised vs sequential, on a tiny problem."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(20, *SHAPE, generator=g)
    rows = []
    for kind, labels in (
        ("hard", torch.randint(0, CLASSES, (20,), generator=g)),
        ("soft", torch.randn(20, CLASSES, generator=g)),
    ):
        cfg = TrainConfig(width=8, epochs=5, batch_size=8)
        ref = sequential(images, labels, 0.01, cfg, list(range(seeds)))
        init = torch.stack(
            [
                ParamLayout.from_module(m).flatten(m)
                for m in (build_model(cfg, CLASSES, SHAPE, s, CPU) for s in range(seeds))
            ]
        )
        for mode in ENGINES:
            got = train_seeds(images, labels, 0.01, cfg, list(range(seeds)), mode)
            rows.append(
                {
                    "mode": mode,
                    "labels": kind,
                    "seeds": seeds,
                    "problem": "20 random images, width 8, 6 passes of batches of 8 (18 steps)",
                    "max_abs_weight_diff": float((got - ref).abs().max()),
                    "max_abs_weight": float(ref.abs().max()),
                    "max_abs_training_change": float((ref - init).abs().max()),
                }
            )
    return rows


def profile_step(width: int, steps: int = 10) -> list[dict]:
    """Share of self CPU time per op in `steps` plain training steps of one evaluation network
    (100 images, soft labels, no DSA), by torch.profiler: the ops that over 1 %."""
    from torch.profiler import ProfilerActivity, profile

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, *SHAPE, generator=g), torch.randn(100, CLASSES, generator=g)
    model = build_model(TrainConfig(width=width), CLASSES, SHAPE, 0, CPU)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        loss = label_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = [
        {"op": e.key, "self_cpu_share": round(e.self_cpu_time_total / total, 4), "calls": e.count}
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)
    ]
    return [r for r in rows if r["self_cpu_share"] >= 0.01]


def timing(width: int, k: int, passes: int, rounds: int) -> list[dict]:
    """CPU seconds per seed-step of each mode, rounds alternating the modes."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(100, *SHAPE, generator=g)
    labels = torch.randn(100, CLASSES, generator=g)
    cfg = TrainConfig(width=width, epochs=passes - 1)
    seeds = list(range(k))
    runs: dict[str, Callable[[], object]] = {
        "sequential": lambda: sequential(images, labels, 0.01, cfg, seeds),
        **{m: (lambda m=m: train_seeds(images, labels, 0.01, cfg, seeds, m)) for m in ENGINES},
    }
    for run in runs.values():  # warm-up: oneDNN's one-off set-up
        run()
    samples: dict[str, list[float]] = {m: [] for m in runs}
    for _ in range(rounds):
        for mode, run in runs.items():
            tick = time.process_time()
            run()
            samples[mode].append((time.process_time() - tick) / (k * passes))
    seq = statistics.median(samples["sequential"])
    rows = []
    for mode, values in samples.items():
        per_step = statistics.median(values)
        rows.append(
            {
                "stage": "evaluate_seed_steps",
                "settings": f"width {width}, K {k} seeds, 100 images soft labels, DSA",
                "mode": mode,
                "seconds": round(per_step, 4),
                "seconds_cpu": round(per_step, 4),
                "unit": "seed-step (CPU seconds per network per step of 100 images)",
                "seconds_per_evaluation_seed": round(per_step * 301, 2),
                "ratio_sequential": round(seq / per_step, 3),
                "ratio_sequential_per_round": [
                    round(a / b, 3) for a, b in zip(samples["sequential"], values, strict=True)
                ],
                "samples": [round(v, 4) for v in values],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "measured": f"{rounds} rounds x {passes} passes, x 301 per evaluation seed",
            }
        )
    return rows


def write(result: dict, out: str) -> None:
    """benchmarks/results/OUT.json and OUT.md."""
    (RESULTS / f"{out}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Evaluation seeds trained at once (vmap, packed) vs one after the other",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}",
        f"- date: {result['date']}",
        *([f"- profile: `{result['profile_command']}`"] if result.get("profile_command") else []),
        f"- load (/proc/loadavg, 1 min) at each (width, K): {'; '.join(result['load'])}",
        "",
        "CPU seconds (process_time, one torch thread) per network per training step of the",
        "evaluation recipe (100 images, soft labels, DSA); one evaluation seed of the CPU profile",
        "is 301 steps. ratio_sequential = sequential / mode (above 1: faster than one seed after",
        "the other), median over rounds that alternate the modes in one process.",
        "",
        "| settings | mode | cpu s / seed-step | cpu s / eval seed | ratio_sequential | rounds |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['settings']} | {r['mode']} | {r['seconds_cpu']:.4f} | "
            f"{r['seconds_per_evaluation_seed']:.1f} | {r['ratio_sequential']:.2f} | "
            f"{', '.join(f'{v:.2f}' for v in r['ratio_sequential_per_round'])} |"
        )
    lines += [
        "",
        "Agreement with `train_network` (same seeds, init, batch order, DSA draws), final weights:",
        "",
        "| mode | labels | seeds | max abs difference | max abs weight | max abs training change |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for a in result["agreement"]:
        lines.append(
            f"| {a['mode']} | {a['labels']} | {a['seeds']} | {a['max_abs_weight_diff']:.2e} | "
            f"{a['max_abs_weight']:.3f} | {a['max_abs_training_change']:.3f} |"
        )
    lines += ["", f"Problem of the agreement check: {result['agreement'][0]['problem']}.", ""]
    if result.get("profile"):
        lines += [
            "Where a width-32 step goes (torch.profiler, self CPU time, ops over 1 %; "
            "the rest together: "
            f"{100 * (1 - sum(r['self_cpu_share'] for r in result['profile'])):.1f} %):",
            "",
            "| op | share | calls |",
            "|---|---:|---:|",
            *[
                f"| {r['op']} | {100 * r['self_cpu_share']:.1f} % | {r['calls']} |"
                for r in result["profile"]
            ],
            "",
        ]
    if result.get("note"):
        lines += [result["note"], ""]
    (RESULTS / f"{out}.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default="multiseed")
    parser.add_argument("--profile", action="store_true", help="with --report-only: re-profile")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite OUT.md from OUT.json (with --note)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    if args.report_only:
        result = json.loads((RESULTS / f"{args.out}.json").read_text())
        if args.profile:
            result["profile"] = profile_step(32)
            result["profile_command"] = command()
        result["machine"] = cpu_description(1)
        result["note"] = args.note or result.get("note", "")
        write(result, args.out)
        return
    result = {
        **provenance(cpu_description(1)),
        "profile": profile_step(32),
        "note": args.note,
        "agreement": agreement(3),
        "load": [],
        "rows": [],
    }
    write(result, args.out)
    for width in args.widths:
        for k in args.seeds:
            result["rows"] += timing(width, k, args.passes, args.rounds)
            load = Path("/proc/loadavg").read_text().split()[0]
            result["load"].append(f"width {width}, K {k}: {load}")
            write(result, args.out)  # partial results as they come
            print(json.dumps(result["rows"][-3:]), flush=True)


if __name__ == "__main__":
    main()
