"""Evaluate a distillation continued beyond its cell's run into a run directory of its own.

A grid trial (`tune_distill.py --grid`) continued to more iterations shares its iteration-0 set
(the same file) with a cell that already evaluated it. This writes `<out>/eval/<method>.json` for
the continued set, with the cell's evaluation protocol and seeds, copies the cell's config, data
files and iteration-0 evaluation, and recomputes the paired distillation gain against it, so
`bench_science.py --ablation LABEL=<out>` reads it like any run directory. The two initial sets
must be byte-identical (checked). Nothing else is recomputed.

Run: `.venv/bin/python benchmarks/eval_continued.py --cell runs/b100-ipc10-ltdd-img10 --method
ltdd --set-dir runs/b100-ipc10/tune/ltdd/grid/mean-dam-img10 --out runs/b100-ipc10-ltdd-img10-40`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import torch

from ltdd.config import load_config
from ltdd.data.dataset import prepare_data
from ltdd.data.preprocess import Preprocessing
from ltdd.distilled import DistilledSet
from ltdd.evaluate.evaluate import evaluate_set
from ltdd.evaluate.gain import distillation_gain
from ltdd.io import read_json, write_json
from ltdd.pipeline.config import RunConfig
from ltdd.pipeline.run import Run


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", type=Path, required=True)
    parser.add_argument("--method", default="ltdd")
    parser.add_argument("--set-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cell_set = args.cell / "distill" / args.method
    if sha(cell_set / "initial.safetensors") != sha(args.set_dir / "initial.safetensors"):
        parser.error("the continued set does not start from the cell's iteration-0 set")
    cfg = load_config(RunConfig, args.cell / "config.yaml")
    data = prepare_data(cfg.data, Preprocessing.load(args.cell / "preprocess.safetensors"))
    final = DistilledSet.load(args.set_dir / "distilled.safetensors")
    eval_cfg = Run(cfg, progress=False)._eval_cfg(None, final.meta.get("model", {}))
    result = evaluate_set(final.images, final.labels, final.lr, data, eval_cfg, torch.device("cpu"))
    result.update(method=args.method, arch=eval_cfg.train.model, ipc=cfg.ipc)
    result["label_kind"] = final.label_kind
    out_set = args.out / "distill" / args.method
    out_set.mkdir(parents=True, exist_ok=True)
    for name in ("distilled.safetensors", "initial.safetensors", "metrics.jsonl"):
        shutil.copy2(args.set_dir / name, out_set / name)
    for name in ("config.yaml", "data.json", "preprocess.safetensors"):
        shutil.copy2(args.cell / name, args.out / name)
    write_json(args.out / "eval" / f"{args.method}.json", result)
    init = read_json(args.cell / "eval" / "init" / f"{args.method}.json")
    init["distillation_gain"] = distillation_gain(
        result["balanced"]["accuracy"]["runs"], init["balanced"]["accuracy"]["runs"]
    )
    init["continued_from"] = str(args.cell)
    write_json(args.out / "eval" / "init" / f"{args.method}.json", init)
    print(result["balanced"]["accuracy"], init["distillation_gain"])


if __name__ == "__main__":
    main()
