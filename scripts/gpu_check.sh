#!/usr/bin/env bash
# GPU check (docs/performance.md, "GPU check"): accelerator-vs-CPU parity and engine
# throughput for chromBPNet, Enformer and Borzoi from random weights; no network.
#   bash scripts/gpu_check.sh [--quick] [--max-variants N] [--models bpnet,enformer,borzoi]
# Full-length configs on a GPU (about 8 minutes on one H100); tiny configs on a CPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" scripts/gpu_check.py "$@"
