#!/usr/bin/env bash
# The prepared accelerator check (benchmarks/device_check.py): BERT-base train step at two batch sizes,
# encoding and the bridge precompute, on random weights and synthetic data, in at most 8 minutes.
#
#   bash benchmarks/device_check.sh [OUT_DIR] [device_check.py options, e.g. --smoke or --peak-tflops 989]
#
# OUT_DIR defaults to $OUT (set on a lent device machine) or benchmarks/results/device_check; it gets
# device_check.json, device_check.md and device_check.log. Python: $PYTHON, else .venv/bin/python, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/device_check}"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out="$1"; shift; fi
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
  echo "device_check $(date -u +%FT%TZ) python=$py"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  timeout 480 "$py" benchmarks/device_check.py --out "$out" "$@"
  echo "exit $?"
} 2>&1 | tee "$out/device_check.log"
