#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian 12 machine (also used by CI):
#   * four QEMU builds: 7.2 (system), 10.0 (unpacked into .qemu/10.0), 5.2 and 11.1
#     (Debian 11 / 13 chroots in .qemu/5.2, .qemu/11.1)  -> scripts/install-qemu.sh
#   * the Linux test guest whose heartbeat judges survival (.guest)  -> scripts/build-guest.sh
#   * Debian's Chromium, for the browser test of the notebook widgets
#   * the project virtual environment .venv with the package and its [dev] extras
# Root or sudo.  Idempotent: a second run only checks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$MIGLAB_ROOT"

step "QEMU builds" bash scripts/install-qemu.sh
step "guest" bash scripts/build-guest.sh
step "chromium" apt_install chromium  # with its recommended fonts, as tested
step "python venv" ensure_venv dev
