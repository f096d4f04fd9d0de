#!/usr/bin/env bash
# The demo: Fashion-MNIST-LT (beta 100), IPC 10, random vs DATM vs LTDD on a 2-core CPU profile.
# A second run reuses every stage whose configuration is unchanged and finishes in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ltdd run --config configs/run/demo.yaml "$@"
