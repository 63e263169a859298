#!/usr/bin/env bash
# Set up everything miglab needs on a fresh Debian 12 machine (also used by CI):
#   * QEMU 7.2 (system) and QEMU 10.0 (unpacked into .qemu/10.0)  -> scripts/install-qemu.sh
#   * the Linux test guest whose heartbeat judges survival (.guest)  -> scripts/build-guest.sh
#   * Debian's Chromium, for the browser test of the notebook widgets
#   * the Python package with its [dev] extras (tests, notebooks, linters)
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

bash scripts/install-qemu.sh
bash scripts/build-guest.sh
if ! command -v chromium >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null  # with its recommended fonts, as tested
fi
python3 -m pip install -q -e ".[dev]"
