#!/usr/bin/env bash
# The demo: a long-tailed Fashion-MNIST split, a random real baseline, its evaluation and a picture.
set -euo pipefail
cd "$(dirname "$0")/.."
ltdd=.venv/bin/ltdd
out=runs/demo
mkdir -p "$out"
$ltdd data --dataset fashion-mnist --imbalance-factor 100 --json "$out/data.json"
$ltdd baseline random --dataset fashion-mnist --imbalance-factor 100 --ipc 10 --out "$out/random.safetensors"
$ltdd evaluate "$out/random.safetensors" --width 32 --epochs 300 --seeds 2 --json "$out/random.json"
$ltdd show "$out/random.safetensors" --out "$out/random.png"
echo "demo outputs in $out/"
