#!/usr/bin/env bash
# All benchmarks, each writing its table to benchmarks/results/ (CPU: expect about an hour).
set -euo pipefail
cd "$(dirname "$0")/../benchmarks"
py=../.venv/bin/python
for script in bench_trainer.py bench_baselines.py bench_experts.py bench_distill.py; do
  if [ -f "$script" ]; then
    echo "== $script"
    $py "$script"
  fi
done
