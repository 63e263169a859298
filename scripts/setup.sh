#!/usr/bin/env bash
# Set up everything miglab needs on a fresh Debian 12 machine (also used by CI):
#   * four QEMU builds: 7.2 (system), 10.0 (unpacked into .qemu/10.0), 5.2 and 11.1
#     (Debian 11 / 13 chroots in .qemu/5.2, .qemu/11.1)  -> scripts/install-qemu.sh
#   * Debian's Chromium, for the browser test of the notebook widgets
#   * the Python package with its [dev] extras (tests, notebooks, linters)
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

bash scripts/install-qemu.sh
if ! command -v chromium >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null  # with its recommended fonts, as tested
fi
python3 -m pip install -q -e ".[dev]"
