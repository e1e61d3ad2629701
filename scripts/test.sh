#!/usr/bin/env bash
# Install what is needed, then lint and run the whole test suite (about 25 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
ruff check .
python -m pytest -q "$@"
