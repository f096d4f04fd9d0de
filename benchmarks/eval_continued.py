"""Evaluate a distillation continued beyond its cell's run into a run directory of its own.

A grid trial (`tune_distill.py --grid`) continued to more iterations shares its iteration-0 set
(the same tensors) with a cell that already evaluated it. This writes `<out>/eval/<method>.json`
for the continued set, with the cell's evaluation protocol and seeds, copies the cell's config,
data files and iteration-0 evaluation, and recomputes the paired distillation gain against it,
so `bench_science.py --ablation LABEL=<out>` reads it like any run directory. The two initial
sets must hold the same tensors (images, labels, classes, lr: checked; their metadata records
the config, which may differ in keys that do not touch the initialisation). Nothing else is
recomputed.

`--set-file it-0100.safetensors` evaluates a milestone snapshot of the trial instead of its
final set (`tune_distill.py --milestones`), with the metrics cut at that iteration.
`--evaluate-initial` evaluates the trial's own iteration-0 set with the same protocol and seeds
instead of reusing the cell's (for a trial whose initialisation differs from the cell's, e.g.
`image_init: herding`); the check is then not needed.

Run: `.venv/bin/python benchmarks/eval_continued.py --cell runs/b100-ipc10-ltdd-img10 --method
ltdd --set-dir runs/b100-ipc10/tune/ltdd/grid/mean-dam-img10 --out runs/b100-ipc10-ltdd-img10-40`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from ltdd.config import load_config
from ltdd.data.dataset import prepare_data
from ltdd.data.preprocess import Preprocessing
from ltdd.distilled import DistilledSet
from ltdd.evaluate.evaluate import evaluate_set
from ltdd.evaluate.gain import distillation_gain
from ltdd.io import load_tensors, read_json, write_json
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run


def same_set(a: Path, b: Path) -> bool:
    """Whether two set files hold equal tensors (names, shapes, dtypes and values)."""
    (ta, _), (tb, _) = load_tensors(a), load_tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", type=Path, required=True)
    parser.add_argument("--method", default="ltdd")
    parser.add_argument("--set-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set-file", default="distilled.safetensors")
    parser.add_argument("--evaluate-initial", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cell_set = args.cell / "distill" / args.method
    initial_file = args.set_dir / "initial.safetensors"
    if not args.evaluate_initial and not same_set(cell_set / "initial.safetensors", initial_file):
        parser.error("the continued set does not start from the cell's iteration-0 set")
    cfg = load_config(RunConfig, args.cell / "config.yaml")
    data = prepare_data(cfg.data, Preprocessing.load(args.cell / "preprocess.safetensors"))
    final = DistilledSet.load(args.set_dir / args.set_file)
    eval_cfg = Run(cfg, progress=False)._eval_cfg(None, final.meta.get("model", {}))

    def evaluate(dset: DistilledSet) -> dict:
        result = evaluate_set(
            dset.images, dset.labels, dset.lr, data, eval_cfg, torch.device("cpu")
        )
        result.update(method=args.method, arch=eval_cfg.train.model, ipc=cfg.ipc)
        result["label_kind"] = dset.label_kind
        return result

    out_set = args.out / "distill" / args.method
    out_set.mkdir(parents=True, exist_ok=True)
    shutil.copy2(args.set_dir / args.set_file, out_set / "distilled.safetensors")
    shutil.copy2(initial_file, out_set / "initial.safetensors")
    upto = int(final.meta["iterations"])
    lines = (args.set_dir / "metrics.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["iteration"] <= upto]
    (out_set / "metrics.jsonl").write_text("".join(line + "\n" for line in kept))
    for name in ("config.yaml", "data.json", "preprocess.safetensors"):
        shutil.copy2(args.cell / name, args.out / name)
    if args.evaluate_initial:
        init = evaluate(DistilledSet.load(initial_file))
        init["evaluated_from"] = str(initial_file)
    else:
        init = read_json(args.cell / "eval" / "init" / f"{args.method}.json")
        init["continued_from"] = str(args.cell)
    result = evaluate(final)
    write_json(args.out / "eval" / f"{args.method}.json", result)
    init["distillation_gain"] = distillation_gain(
        result["balanced"]["accuracy"]["runs"], init["balanced"]["accuracy"]["runs"]
    )
    write_json(args.out / "eval" / "init" / f"{args.method}.json", init)
    print(result["balanced"]["accuracy"], init["distillation_gain"])


if __name__ == "__main__":
    main()
