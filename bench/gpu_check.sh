#!/usr/bin/env bash
# The GPU check (issue "After SFT"): ocrft at real size on one accelerator, under 8 minutes.
#
#   bash bench/gpu_check.sh            # on the device: Qwen2-VL-2B real size, bf16 (bench/bench_gpu.py)
#   bash bench/gpu_check.sh --smoke    # here, on CPU, tiny sizes: proves the script works
#
# On a lent device machine (the `device` tool's run), python3 already holds torch; the packages
# it lacks travel as wheels in .whl/ (make gpu-wheels; the tool's README says how to carry them),
# installed here into /tmp/site. Results land in experiments/gpu/ (and in $OUT when set, so
# the device tool brings them back).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 "$PY" bench/bench_gpu.py "$@"
if [[ -n "${OUT:-}" ]]; then cp experiments/gpu/*.json experiments/gpu/README.md "$OUT"/ 2>/dev/null || true; fi
