#!/usr/bin/env bash
# Install what is needed (scripts/install.sh --with-test-tools), then lint (scripts/lint.sh:
# ruff, its format check, the import contracts, mypy) and run the whole test suite in the
# project's .venv (about 25 minutes on 2 cores; the fast loop is scripts/check.sh).
# Two test processes (PYTEST_WORKERS): most of a test's time is single-threaded Python (graph
# tracing, model building, process start-up), so two of them keep two cores busy. A file
# stays on one worker (--dist loadfile): module fixtures are built once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --with-test-tools  # + sshd binary for the remote tests, no service
VENV=$(cd "${ADAMBNN_VENV:-.venv}" && pwd)
# Tests start `python -m adambnn_larq` with the interpreter that runs them, and a few tools by
# name: the venv comes first on PATH.
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
bash scripts/lint.sh
python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
