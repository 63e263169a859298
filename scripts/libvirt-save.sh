#!/usr/bin/env bash
# Make real libvirt save images (`virsh save`) of a small transient domain, one per
# save_image_format, with Debian's libvirt started by hand (no systemd):
#   bash scripts/libvirt-save.sh OUTDIR [FORMAT...]      (default: raw gzip bzip2 xz lzop; zstd needs libvirt >= 10)
#   bash scripts/libvirt-save.sh OUTDIR managedsave      (`virsh managedsave` of a defined domain:
#                                                         OUTDIR/libvirt-managedsave.img, raw format)
#   bash scripts/libvirt-save.sh OUTDIR guest            (`virsh save` of miglab's Linux test guest
#                                                         (.guest, scripts/build-guest.sh) once it
#                                                         beats: OUTDIR/libvirt-guest.img, its
#                                                         console in OUTDIR/console-save.log)
#   bash scripts/libvirt-save.sh --restore IMAGE         (virsh restore; prints the domain state)
#   bash scripts/libvirt-save.sh --restore IMAGE --run S (restore running, let it run S seconds)
#   bash scripts/libvirt-save.sh --libvirt 11.3 ...      (the same with Debian 13's libvirt 11.3 and
#                                                         QEMU 10.0, in the chroot .qemu/libvirt-11.3
#                                                         that scripts/install-qemu.sh installs)
# Needs root and the packages libvirt-daemon-system libvirt-clients (scripts/setup.sh).
# The sandbox needs no cgroups, namespaces or security driver; qemu.conf is set so.
# MACHINE names the domain's machine type (default pc-q35-7.2, known to QEMU 7.2 and 11.1).
# Writes OUTDIR/libvirt-FORMAT.img; libvirtd is stopped again at the end.
set -euo pipefail
if [ "${1:-}" = "--libvirt" ]; then
  # Re-run this script inside the chroot, in a private mount namespace: /proc, /dev, /sys and
  # the directories it reads and writes are bound at identical paths, so paths mean the same
  # on both sides; the chroot's /run and /etc are its own, so its libvirtd never meets the
  # host's.  The namespace (and every mount) ends with the last process in it.
  ver=${2:?usage: libvirt-save.sh --libvirt VERSION ...}; shift 2
  root="$(cd "$(dirname "$0")/.." && pwd)/.qemu/libvirt-$ver/root"
  [ -x "$root/usr/sbin/libvirtd" ] || { echo "libvirt-save.sh: no libvirt $ver in $root (scripts/install-qemu.sh)" >&2; exit 1; }
  script=$(realpath "$0")
  guest=$(realpath "$(dirname "$script")/../.guest" 2>/dev/null || echo /tmp)
  export MIGLAB_GUEST=$guest  # resolved here: the worktree's .guest symlink is not in the chroot
  if [ "${1:-}" = "--restore" ]; then dir=$(dirname "$(realpath "${2:?}")"); else mkdir -p "${1:?}"; dir=$(realpath "$1"); fi
  # shellcheck disable=SC2016  # expanded by the inner sh
  exec unshare -m --propagation private sh -ec '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    for d in /tmp "$(dirname "$1")" "$2" "$3"; do mkdir -p "$root$d"; mount --bind "$d" "$root$d"; done
    shift 3
    exec chroot "$root" "$@"' sh "$root" "$script" "$dir" "$guest" bash "$script" "$@"
fi
restore="" run=""
if [ "${1:-}" = "--restore" ]; then
  restore=$(realpath "${2:?usage: libvirt-save.sh --restore IMAGE [--run SECONDS]}")
  [ "${3:-}" != "--run" ] || run=${4:?}
  set -- /tmp
fi
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
  if [ -n "$run" ]; then virsh -c qemu:///system restore "$restore" >/dev/null; else
    virsh -c qemu:///system restore "$restore" --paused >/dev/null; fi
  name=$(virsh -c qemu:///system list --name)
  name=${name%%$'\n'*}
  [ -n "$name" ] || fail "virsh restore left no running domain"
  [ -z "$run" ] || sleep "$run"
  virsh -c qemu:///system domstate "$name"
  virsh -c qemu:///system destroy "$name" >/dev/null
  exit 0
fi
xml=$(mktemp --suffix=.xml)
cat >"$xml" <<XML
<domain type='qemu'>
  <name>miglab-save</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='${MACHINE:-pc-q35-7.2}'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
XML
virsh_() { virsh -c qemu:///system "$@" >/dev/null; }
for fmt in "${formats[@]}"; do
  sed -i '/^save_image_format = /d' "$conf"
  if [ "$fmt" = guest ]; then
    # The test guest as libvirt runs it: TCG, qemu64, its disk read-only on virtio, ttyS0 into a
    # file; no balloon or USB (libvirt's defaults), so only devices miglab models are saved.
    g=${MIGLAB_GUEST:-$(realpath "$(dirname "$0")/../.guest")}
    [ -f "$g/guest.json" ] || fail "no test guest in $g (scripts/build-guest.sh)"
    field() { sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" "$g/guest.json"; }
    console="$out/console-save.log"
    rm -f "$console"
    gxml=$(mktemp --suffix=.xml)
    cat >"$gxml" <<XML
<domain type='qemu'>
  <name>miglab-guest</name>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64' machine='${MACHINE:-pc-q35-7.2}'>hvm</type>
    <kernel>$g/$(field kernel)</kernel><initrd>$g/$(field initrd)</initrd><cmdline>$(field append)</cmdline></os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='$g/$(field disk)'/><target dev='vda' bus='virtio'/><readonly/></disk>
    <serial type='file'><source path='$console'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
    start
    virsh_ destroy miglab-guest 2>/dev/null || true
    virsh_ create "$gxml"
    for _ in $(seq 600); do [ "$(grep -c '^HB ' "$console" 2>/dev/null)" -ge 3 ] && break; sleep 0.5; done
    [ "$(grep -c '^HB ' "$console" 2>/dev/null)" -ge 3 ] || fail "the guest did not beat within 300 s"
    rm -f "$out/libvirt-guest.img"
    virsh_ save miglab-guest "$out/libvirt-guest.img"
    rm -f "$gxml"
    echo "$out/libvirt-guest.img"
    continue
  fi
  if [ "$fmt" = managedsave ]; then
    # A defined (persistent) domain: libvirt keeps its managed save under its own state dir.
    start
    virsh_ undefine miglab-save --managed-save 2>/dev/null || true
    virsh_ define "$xml"
    virsh_ start miglab-save
    sleep 1
    virsh_ managedsave miglab-save
    saved=/var/lib/libvirt/qemu/save/miglab-save.save
    [ -f "$saved" ] || fail "virsh managedsave wrote no $saved"
    cp --sparse=always "$saved" "$out/libvirt-managedsave.img"
    virsh_ undefine miglab-save --managed-save
    echo "$out/libvirt-managedsave.img"
    continue
  fi
  echo "save_image_format = \"$fmt\"" >>"$conf"
  start
  virsh_ destroy miglab-save 2>/dev/null || true
  virsh_ create "$xml"
  sleep 1
  rm -f "$out/libvirt-$fmt.img"
  virsh_ save miglab-save "$out/libvirt-$fmt.img"
  echo "$out/libvirt-$fmt.img"
done
sed -i '/^save_image_format = /d' "$conf"
rm -f "$xml"
