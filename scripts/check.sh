#!/usr/bin/env bash
# The fast loop: lint, format check, import contracts, type check (scripts/lint.sh) and the
# tests not marked slow, in the project's existing .venv, installing nothing: about 3 minutes on
# 2 cores (README, "Set-up"). The whole suite is scripts/test.sh (CI). Arguments go to pytest:
#   bash scripts/check.sh tests/test_cli.py
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ADAMBNN_VENV:-.venv}
for tool in python ruff lint-imports mypy; do
  if [ ! -x "$VENV/bin/$tool" ]; then
    printf 'check: %s/bin/%s is missing: run `bash scripts/install.sh --with-test-tools` first\n' \
      "$VENV" "$tool" >&2
    exit 2
  fi
done
VENV=$(cd "$VENV" && pwd)
# This checkout's package first, also for lint-imports and for the subprocesses of the tests,
# whichever checkout the venv's editable install points at.
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)
bash scripts/lint.sh
printf '== pytest -m "not slow"\n' >&2
python -m pytest -q -m "not slow" -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
printf 'check: passed in %d s\n' "$(( $(date +%s) - started ))" >&2
