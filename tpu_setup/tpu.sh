#!/usr/bin/env bash
# Thin wrapper: tpu_setup/tpu.sh <create|install|data|launch|logs|status|watch|teardown> [flags]
# runs `python -m tpu_setup.<step>` from the repo root with whatever python3 is on PATH.
set -euo pipefail
step="${1:?usage: tpu_setup/tpu.sh <create|install|data|launch|logs|status|watch|teardown> [flags]}"
shift
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" -m "tpu_setup.${step}" "$@"
