#!/usr/bin/env bash
# Kill fuzzing with 10 kills per task (CI runs 2): train, eval, prepare, endpoint eval, sweep.
# Writes kills.json (every kill: task, seed, chain, delay, what was on disk) and prints the
# tables of README.md (summarize.py). About 10-25 minutes on 2 cores, depending on load.
#   experiments/kill_fuzz/run.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/kill_fuzz
rm -f "$out/kills.json"
OCRFT_KILL_POINTS="${OCRFT_KILL_POINTS:-10}" OCRFT_KILL_REPORT="$out/kills.json" OMP_NUM_THREADS=1 \
  .venv/bin/python -m pytest tests/integration/test_kill_fuzz.py -q -p no:cacheprovider --durations=5 \
  | tee "$out/pytest.log"
.venv/bin/python "$out/summarize.py" "$out/kills.json"
