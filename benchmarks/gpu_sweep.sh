#!/usr/bin/env bash
# bench_methods on one GPU: a smoke check of every stage, then the (β, IPC) cells of
# configs/run/fmnist-lt.yaml one after another (`ltdd run --device cuda`), then the tables and the
# reports from the cells that finished before TOTAL seconds (bench_methods.py --report-only).
# On an H100 a cell takes about 2 minutes (IPC 50 without DD-Ranking: 115 s); eight cells run as
# eight processes at once each ran about 4.8x slower (1.7x more work done in all) and none
# finished within 443 s; one at a time, every finished cell comes back.
# Split the grid across calls with BETAS and IPCS when one call is too short.
# Needs python3 with torch and the dependencies of pyproject.toml, and Fashion-MNIST in
# .data/fashion-mnist or the system location. Run from the repository root:
#   bash benchmarks/gpu_sweep.sh                       # smoke check, then the sweep
#   SMOKE_ONLY=1 DEVICE=cpu bash benchmarks/gpu_sweep.sh  # the short end-to-end check alone
# Results: benchmarks/results/methods-gpu.md and methods-gpu-report-ipc*/; with $OUT set, a
# tarball of those, the run logs and the runs' JSON and YAML files (no tensors) goes there.
set -uo pipefail
DEVICE=${DEVICE:-cuda}
TOTAL=${TOTAL:-540}  # seconds for the whole script; the cells get what the smoke check leaves
BETAS=${BETAS:-10 50 100 200}
IPCS=${IPCS:-10 50}
ARCHS=${ARCHS:-'evaluate.archs=[alexnet, vgg11, resnet18, resnet18_bn]'}
RUNS=runs/gpu
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 MPLBACKEND=Agg
mkdir -p "$RUNS/logs"
ROOT=()
[ -d .data/fashion-mnist ] && ROOT=(data.root=.data/fashion-mnist)
ltdd() { python3 -m ltdd "$@"; }

python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

# 1. Smoke: every stage, every method and network, IPC 50 at β 200 (tail classes below the IPC).
SMOKE=(
  experts.representation.num_experts=2 experts.representation.epochs=3
  experts.classifier.num_experts=2 experts.classifier.epochs=2
  evaluate.seeds=2 evaluate.train.epochs=2 evaluate.full_epochs=1 "$ARCHS"
)
for m in mtt datm ltdd; do
  SMOKE+=("distill.$m.iterations=2" "distill.$m.checkpoint_every=1"
          "distill.$m.phase1.syn_steps=2" "distill.$m.phase1.max_start_epoch=1")
done
SMOKE+=(distill.datm.phase1.current_max_start_epoch=1 distill.datm.phase1.expansion_end_epoch=1
        distill.ltdd.phase2.syn_steps=2)
t0=$(date +%s)
start=$t0
rm -rf "$RUNS/smoke"
if ! ltdd run --config configs/run/fmnist-lt.yaml --device "$DEVICE" name=smoke runs_dir=$RUNS \
    data.imbalance_factor=200 ipc=50 "${ROOT[@]}" "${SMOKE[@]}" > "$RUNS/logs/smoke.log" 2>&1; then
  tail -n 40 "$RUNS/logs/smoke.log"
  echo "smoke check FAILED after $(( $(date +%s) - start )) s"
  exit 1
fi
tail -n 25 "$RUNS/logs/smoke.log"
echo "smoke check passed in $(( $(date +%s) - start )) s"
[ -n "${SMOKE_ONLY:-}" ] && exit 0

# 2. The sweep, one cell at a time; other networks evaluated at IPC 10.
smi=
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 \
    > "$RUNS/logs/nvidia-smi.csv" &
  smi=$!
fi
start=$(date +%s)
for b in $BETAS; do
  for i in $IPCS; do
    left=$(( TOTAL - ($(date +%s) - t0) - 60 ))  # 60 s kept for the tables, figures and tarball
    [ "$left" -lt 30 ] && { echo "no time left for b$b-ipc$i"; continue; }
    extra=()
    [ "$i" = 10 ] && extra=("$ARCHS")
    timeout "$left" python3 -m ltdd run --config configs/run/fmnist-lt.yaml --device "$DEVICE" \
      runs_dir=$RUNS name="b$b-ipc$i" data.imbalance_factor="$b" ipc="$i" "${ROOT[@]}" \
      "${extra[@]}" > "$RUNS/logs/b$b-ipc$i.log" 2>&1
    echo "b$b-ipc$i: exit $?, $(( $(date +%s) - start )) s into the sweep"
  done
done
[ -n "$smi" ] && kill "$smi"
for f in "$RUNS"/logs/b*.log; do echo "== $f"; grep -v "it/s\|s/it" "$f" | tail -n 3; done

# 3. Tables and reports from the finished cells.
NAME=$(python3 -c "import torch; print(torch.cuda.get_device_name(0))" 2>/dev/null || echo CPU)
(cd benchmarks && python3 bench_methods.py --report-only --runs-dir "../$RUNS" --name methods-gpu \
  --betas $BETAS --ipcs $IPCS --device-name "$NAME, one cell at a time" device="$DEVICE")
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gpu-sweep.tgz" --exclude='*/experts' --exclude='*/smoke' --exclude='*.safetensors' \
    benchmarks/results/methods-gpu.md benchmarks/results/methods-gpu-report-ipc* "$RUNS"
  ls -la "$OUT"
fi
