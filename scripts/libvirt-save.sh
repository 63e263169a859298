#!/usr/bin/env bash
# Make real libvirt save images (`virsh save`) of a small transient domain, one per
# save_image_format, with Debian's libvirt started by hand (no systemd):
#   bash scripts/libvirt-save.sh OUTDIR [FORMAT...]      (default: raw gzip bzip2 xz lzop; zstd needs libvirt >= 10)
#   bash scripts/libvirt-save.sh --restore IMAGE         (virsh restore; prints the domain state)
# Needs root and the packages libvirt-daemon-system libvirt-clients (scripts/setup.sh).
# The sandbox needs no cgroups, namespaces or security driver; qemu.conf is set so.
# Writes OUTDIR/libvirt-FORMAT.img; libvirtd is stopped again at the end.
set -euo pipefail
restore=""
if [ "${1:-}" = "--restore" ]; then restore=$(realpath "${2:?usage: libvirt-save.sh --restore IMAGE}"); set -- /tmp; fi
out=$(realpath "${1:?usage: libvirt-save.sh OUTDIR [FORMAT...]}"); shift
formats=("$@"); [ ${#formats[@]} -gt 0 ] || formats=(raw gzip bzip2 xz lzop)  # libvirt 9.0 has no zstd
mkdir -p "$out"
conf=/etc/libvirt/qemu.conf
begin="# miglab: sandbox settings (scripts/libvirt-save.sh)"
if ! grep -qF "$begin" "$conf"; then
  cat >>"$conf" <<CONF
$begin
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
user = "root"
group = "root"
stdio_handler = "file"
CONF
fi
pidfile=/run/libvirtd.pid
stop() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 50); do [ -f "$pidfile" ] || break; sleep 0.2; done
  fi
}
trap stop EXIT
start() {
  stop
  mkdir -p /run/libvirt
  libvirtd --daemon --pid-file "$pidfile"
  for _ in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
}
if [ -n "$restore" ]; then
  start
  for d in $(virsh -c qemu:///system list --name); do virsh -c qemu:///system destroy "$d" >/dev/null; done
  virsh -c qemu:///system restore "$restore" --paused >/dev/null
  name=$(virsh -c qemu:///system list --name | head -1)
  virsh -c qemu:///system domstate "$name"
  virsh -c qemu:///system destroy "$name" >/dev/null
  exit 0
fi
xml=$(mktemp --suffix=.xml)
cat >"$xml" <<XML
<domain type='qemu'>
  <name>miglab-save</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
XML
for fmt in "${formats[@]}"; do
  sed -i '/^save_image_format = /d' "$conf"
  echo "save_image_format = \"$fmt\"" >>"$conf"
  start
  virsh -c qemu:///system destroy miglab-save >/dev/null 2>&1 || true
  virsh -c qemu:///system create "$xml" >/dev/null
  sleep 1
  rm -f "$out/libvirt-$fmt.img"
  virsh -c qemu:///system save miglab-save "$out/libvirt-$fmt.img" >/dev/null
  echo "$out/libvirt-$fmt.img"
done
sed -i '/^save_image_format = /d' "$conf"
rm -f "$xml"
