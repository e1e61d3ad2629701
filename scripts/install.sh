#!/usr/bin/env bash
# Install everything adambnn-larq needs on a fresh Debian/Ubuntu machine (run as root or with
# sudo available): system packages, the pinned Python stack, the project, and PyTorch (CPU) for
# checkpoint import. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if command -v apt-get >/dev/null; then
  # dataset-fashion-mnist: the offline default dataset; openssh: the remote benchmark's tests.
  packages="dataset-fashion-mnist openssh-server openssh-client"
  missing=""
  for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

python -m pip install -q --disable-pip-version-check -r requirements.txt
python -m pip install -q --disable-pip-version-check torch==2.13.0
python -m pip check
python -c "import adambnn_larq, larq_zoo, tensorflow_datasets, larq_compute_engine, torch"
