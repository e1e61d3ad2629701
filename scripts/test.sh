#!/usr/bin/env bash
# Install what is needed, then lint and run the whole test suite (13-16 minutes on 2 cores).
# Two test processes (PYTEST_WORKERS): most of a test's time is single-threaded Python (graph
# tracing, model building, process start-up), so two of them keep two cores busy. A file
# stays on one worker (--dist loadfile): module fixtures are built once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
ruff check .
python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
