#!/usr/bin/env bash
# Set up everything miglab needs on a fresh Debian 12 machine (also used by CI):
#   * QEMU 7.2 (system) and QEMU 10.0 (unpacked into .qemu/10.0)  -> scripts/install-qemu.sh
#   * Debian's Chromium, for the browser test of the notebook widgets
#   * the container tools: qemu-img (qemu-utils) to make and check qcow2 images, lzop
#     (gzip, bzip2, xz, zstd are in the base system), and bookworm's libvirt 9.0 for
#     real `virsh save` images (started by hand by scripts/libvirt-save.sh, no systemd)
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
need=()
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v lzop >/dev/null || need+=(lzop)
command -v zstd >/dev/null || need+=(zstd)
command -v libvirtd >/dev/null || need+=(libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -m pip install -q -e ".[dev]"
