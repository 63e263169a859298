#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian 12 machine (also used by CI):
#   * four QEMU builds: 7.2 (system), 10.0 (unpacked into .qemu/10.0), 5.2 and 11.1
#     (Debian 11 / 13 chroots in .qemu/5.2, .qemu/11.1), and Debian 13's libvirt 11.3 with
#     its QEMU 10.0 (chroot .qemu/libvirt-11.3)  -> scripts/install-qemu.sh
#   * the Linux test guest whose heartbeat judges survival (.guest)  -> scripts/build-guest.sh
#   * Debian's Chromium, for the browser test of the notebook widgets
#   * the container tools: qemu-img (qemu-utils) to make and check qcow2 images, lzop
#     (gzip, bzip2, xz, zstd are in the base system), and bookworm's libvirt 9.0 for
#     real `virsh save` images (started by hand by scripts/libvirt-save.sh, no systemd);
#     binutils' readelf reads export-elf's cores in the tests, not through miglab
#   * the project virtual environment .venv with the package and its [dev] extras
# Root or sudo.  Idempotent: a second run only checks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$MIGLAB_ROOT"

step "QEMU builds" bash scripts/install-qemu.sh
step "guest" bash scripts/build-guest.sh
step "chromium" apt_install chromium  # with its recommended fonts, as tested
step "container tools" apt_install_lean qemu-utils lzop zstd binutils \
  libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
step "python venv" ensure_venv dev
