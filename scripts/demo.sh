#!/usr/bin/env bash
# Install what is needed, then run the main job (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
adambnn demo "$@"
