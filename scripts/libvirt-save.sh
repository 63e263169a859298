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
log=/var/log/libvirt/libvirtd.log
trap 'echo "libvirt-save.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
fail() { echo "libvirt-save.sh: $*" >&2; [ -f "$log" ] && tail -n 5 "$log" >&2; exit 1; }
# Stop the daemon and wait until its process is gone (not just its pid file): a new
# libvirtd started while the old one still holds the pid file exits without a word.
stop() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$pidfile"
}
trap stop EXIT
start() {
  stop
  mkdir -p /run/libvirt
  libvirtd --daemon --pid-file "$pidfile" || fail "libvirtd did not start (its log follows)"
  for _ in $(seq 150); do virsh -c qemu:///system version >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "libvirtd started but does not answer on qemu:///system after 30 s"
}
if [ -n "$restore" ]; then
  start
  for d in $(virsh -c qemu:///system list --name); do virsh -c qemu:///system destroy "$d" >/dev/null; done
  virsh -c qemu:///system restore "$restore" --paused >/dev/null
  name=$(virsh -c qemu:///system list --name)
  name=${name%%$'\n'*}
  [ -n "$name" ] || fail "virsh restore left no running domain"
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
