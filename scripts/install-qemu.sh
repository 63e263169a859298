#!/usr/bin/env bash
# Install the two QEMU builds miglab uses as data source and judge:
#   * QEMU 7.2  - Debian 12's own qemu-system-x86 (system package, /usr/bin)
#   * QEMU 10.0 - bookworm-backports packages, unpacked (not installed) into
#                 .qemu/10.0 inside the project, so 7.2 stays the system QEMU.
# The backports mirror URI is read from the machine's existing apt sources;
# no registry host is written here.  Idempotent: re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
QEMU10_VERSION="${QEMU10_VERSION:-1:10.0.2+ds-2+deb13u1~bpo12+1}"
DEST=".qemu/10.0"
export DEBIAN_FRONTEND=noninteractive

if ! command -v qemu-system-x86_64 >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
fi

if [ ! -x "$DEST/usr/bin/qemu-system-x86_64" ]; then
  uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' "$f")
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "install-qemu: no Debian source found in apt configuration" >&2; exit 1; }
  list=/etc/apt/sources.list.d/miglab-backports.list
  echo "deb $uri bookworm-backports main" > "$list"
  apt-get update -qq
  mkdir -p .qemu/debs "$DEST"
  (cd .qemu/debs && for p in qemu-system-x86 qemu-system-common qemu-system-data \
        qemu-system-modules-opengl qemu-system-modules-spice; do
      ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$p=$QEMU10_VERSION"
   done)
  for deb in .qemu/debs/*.deb; do dpkg -x "$deb" "$DEST"; done
fi
qemu-system-x86_64 --version | head -1
QEMU_MODULE_DIR="$PWD/$DEST/usr/lib/x86_64-linux-gnu/qemu" \
  "$DEST/usr/bin/qemu-system-x86_64" --version 2>/dev/null | head -1
