#!/usr/bin/env bash
# Install what is needed (scripts/install.sh: system packages and the project's .venv), then run
# the main job (see README). Options are passed to `adambnn demo` (--fast, --smoke, --run-dir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV="${ADAMBNN_VENV:-.venv}"
exec "$VENV/bin/adambnn" demo "$@"
