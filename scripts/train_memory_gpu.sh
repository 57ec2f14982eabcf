#!/usr/bin/env bash
# The model's own memory trained into the default backbone in ten minutes of one GPU, then scored
# against `none` and `window-last` (benchmarks/latent_gpu.py; docs/training.md):
#   bash scripts/train_memory_gpu.sh            # 9 min of training, then scoring; run again to resume
#   bash scripts/train_memory_gpu.sh --help     # every size (segments, samples, minutes, batch) is an option
# Writes benchmarks/results/latent_gpu.json and the adapter beside it (latent_gpu.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/latent_gpu.py "$@"
