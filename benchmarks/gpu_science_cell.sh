#!/usr/bin/env bash
# One (beta, IPC) cell of configs/run/fmnist-lt-gpu.yaml on one GPU, then the science table.
# Written without a GPU (issue 9): NOT RUN YET. Budget: 12 minutes on one H100/H200; the script
# stops starting new stages after TOTAL seconds (the pipeline resumes a cell from its finished
# stages, so a second call continues). Run from the repository root:
#   BETA=100 IPC=10 bash benchmarks/gpu_science_cell.sh
# Results: runs/gpu-science/b<BETA>-ipc<IPC>/ and benchmarks/results/science-gpu.{md,json};
# with $OUT set, a copy of those (JSON, YAML, markdown; no tensors) goes there.
set -uo pipefail
BETA=${BETA:-100}
IPC=${IPC:-10}
TOTAL=${TOTAL:-690}
RUNS=runs/gpu-science
NAME=b${BETA}-ipc${IPC}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 MPLBACKEND=Agg
ROOT=()
[ -d .data/fashion-mnist ] && ROOT=(data.root=.data/fashion-mnist)
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
mkdir -p "$RUNS"
start=$(date +%s)
timeout "$TOTAL" python3 -m ltdd run --config configs/run/fmnist-lt-gpu.yaml --device cuda \
  "runs_dir=$RUNS" "name=$NAME" "data.imbalance_factor=$BETA" "ipc=$IPC" "${ROOT[@]}" \
  2>&1 | tee "$RUNS/$NAME.log"
echo "cell wall: $(( $(date +%s) - start )) s"
echo "GPU profile configs/run/fmnist-lt-gpu.yaml, one cell on $(nvidia-smi --query-gpu=name \
  --format=csv,noheader 2>/dev/null | head -1)" > "$RUNS/$NAME.note.md"
(cd benchmarks && python3 bench_science.py --cells "../$RUNS/$NAME" --name science-gpu \
  --note-file "../$RUNS/$NAME.note.md")
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/science-gpu.tgz" benchmarks/results/science-gpu.* "$RUNS/$NAME.log" \
    $(cd "$RUNS/$NAME" && find . -name '*.json' -o -name '*.yaml' -o -name '*.jsonl' | sed "s|^\.|$RUNS/$NAME|")
fi
