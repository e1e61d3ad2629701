#!/usr/bin/env bash
# Install everything adambnn-larq needs on a fresh Debian/Ubuntu machine (run as root or with
# sudo available): system packages, then a project virtual environment (.venv, or $ADAMBNN_VENV)
# holding the pinned Python stack, the project itself and PyTorch (CPU) for checkpoint import.
# A virtual environment because Debian/Ubuntu's system Python refuses `pip install` (PEP 668).
# Safe to run again: it only adds what is missing.
#
# Python: $PYTHON if set, else the first of python3.12, python3.11, python3.10, python3 whose
# version is 3.10-3.12 (the versions TensorFlow 2.16 and LCE 0.16 publish wheels for).
#
# --with-test-tools (scripts/test.sh): also the ssh server and client binaries the remote
# benchmark's tests run on 127.0.0.1 (they start their own sshd on a free port). The main
# command (scripts/demo.sh) installs no network server; this option installs one without
# leaving its service running or enabled.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST_TOOLS=0
for argument in "$@"; do
  case "$argument" in
    --with-test-tools) TEST_TOOLS=1 ;;
    *) printf 'install: error: unknown option %s (only --with-test-tools)\n' "$argument" >&2
       exit 2 ;;
  esac
done

say() { printf 'install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
supported() { case "$1" in 3.10|3.11|3.12) return 0 ;; *) return 1 ;; esac; }

find_python() {
  if [ -n "${PYTHON:-}" ]; then
    local v; v=$(version_of "$PYTHON") || die "PYTHON=$PYTHON does not run"
    supported "$v" || die "PYTHON=$PYTHON is Python $v; adambnn-larq needs 3.10, 3.11 or 3.12"
    echo "$PYTHON"; return
  fi
  local seen="" c v
  for c in python3.12 python3.11 python3.10 python3; do
    command -v "$c" >/dev/null || continue
    v=$(version_of "$c") || continue
    if supported "$v"; then command -v "$c"; return; fi
    seen="$seen $c=$v"
  done
  die "no Python 3.10-3.12 found (seen:${seen:- none}). TensorFlow 2.16 and larq-compute-engine \
0.16 publish wheels for 3.10-3.12 only. Install one (e.g. 'apt-get install python3.11 \
python3.11-venv') or point PYTHON=/path/to/python3.x at one."
}

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
# Installed, not merely known to dpkg: a removed package keeps a "deinstall ... config-files"
# record that `dpkg -s` still reports with success.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
apt_install() {
  command -v apt-get >/dev/null || return 1
  local missing="" p
  for p in "$@"; do installed "$p" || missing="$missing $p"; done
  [ -n "$missing" ] || return 0
  say "apt-get install$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
}

# Installs openssh-server without starting or enabling its service: the tests only need the
# binary. Debian's maintainer scripts ask /usr/sbin/policy-rc.d whether they may start a
# service; 101 means no. An existing policy-rc.d is put back afterwards.
POLICY=/usr/sbin/policy-rc.d
POLICY_SAVED=""
restore_policy() {
  if [ -n "$POLICY_SAVED" ]; then $SUDO cp -p "$POLICY_SAVED" "$POLICY"; rm -f "$POLICY_SAVED"
  else $SUDO rm -f "$POLICY"; fi
}
install_ssh_server() {
  if installed openssh-server; then return 0; fi  # the machine's own: untouched
  command -v apt-get >/dev/null || return 1
  if [ -e "$POLICY" ]; then POLICY_SAVED=$(mktemp); $SUDO cp -p "$POLICY" "$POLICY_SAVED"; fi
  trap restore_policy EXIT  # also when the install fails
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  apt_install openssh-server
  restore_policy
  trap - EXIT
  # The package also enables the unit for the next boot, with or without a running systemd
  # (a symlink under /etc/systemd/system): undo that, and stop it where systemd runs.
  if command -v systemctl >/dev/null; then
    local now=""
    [ -d /run/systemd/system ] && now="--now"
    $SUDO systemctl disable $now ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
  say "openssh-server installed for the tests; its service is not running and not enabled"
}

# dataset-fashion-mnist: the offline default dataset.
apt_install dataset-fashion-mnist || \
  say "no apt-get: install Fashion-MNIST yourself (docs/data.md)"
if [ "$TEST_TOOLS" = 1 ]; then
  { apt_install openssh-client && install_ssh_server; } || \
    say "no apt-get: install openssh (client and sshd binary) yourself for the remote tests"
fi

PY=$(find_python)
VENV="${ADAMBNN_VENV:-.venv}"
want=$(version_of "$PY")
if [ -x "$VENV/bin/python" ] && [ "$(version_of "$VENV/bin/python")" != "$want" ]; then
  die "$VENV was made with another Python than $PY ($want); remove it (rm -r $VENV) and run again"
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY (Python $want)"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian/Ubuntu ship venv's ensurepip separately (python3.X-venv).
    rm -rf "$VENV"
    apt_install "python$want-venv" || die "$PY cannot create a virtual environment; install \
the venv module for Python $want (Debian/Ubuntu: apt-get install python$want-venv)"
    "$PY" -m venv "$VENV" || die "$PY -m venv $VENV failed"
  fi
fi
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
say "installing the pinned Python stack into $VENV (a few minutes the first time)"
"${pip[@]}" -r requirements.txt
"${pip[@]}" torch==2.13.0
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import adambnn_larq, larq_zoo, tensorflow_datasets, larq_compute_engine, torch"
say "ready: $VENV/bin/adambnn (or: source $VENV/bin/activate)"
