#!/usr/bin/env bash
# Make real libvirt save images of miglab's running Linux test guest (.guest, scripts/build-guest.sh)
# with Debian's libvirt started by hand (no systemd):
#   bash scripts/libvirt-save.sh OUTDIR [FORMAT...] [managedsave]
#       Boots the guest once as the persistent domain miglab-guest and, once it beats, saves it
#       (`virsh save`) in each save_image_format in turn (default: every format this libvirt has:
#       raw gzip bzip2 xz lzop, and zstd sparse from libvirt 11), restoring each image
#       (`virsh restore --xml`, the console moved to a new file) and letting it beat before the
#       next save; then `virsh managedsave` (raw) and `virsh start` from the managed save.
#       Writes OUTDIR/libvirt-F.img and OUTDIR/console-F.log, the console of the run that image
#       saved (the domain XML inside names it); the run after the last save writes
#       OUTDIR/console-resumed.log.  So each restore is judged by the next console: the
#       heartbeat of console-F.log must count on in the next one (miglab.qemu.libvirt_saves).
#   bash scripts/libvirt-save.sh --restore IMAGE [--run S] [--console FILE]
#       virsh restore (paused; with --run: running, for S seconds) and print the domain state.
#       The image's guest files are taken from this checkout's .guest and its console goes to
#       FILE (default: a scratch file), so an image made elsewhere restores here.
#   bash scripts/libvirt-save.sh --libvirt 11.3 ...
#       The same with Debian 13's libvirt 11.3 and QEMU 10.0, in the chroot .qemu/libvirt-11.3
#       that scripts/install-qemu.sh installs.
# Needs root and the packages libvirt-daemon-system libvirt-clients (scripts/setup.sh).
# The sandbox needs no cgroups, namespaces or security driver; qemu.conf is set so.
# MACHINE names the domain's machine type (default pc-q35-7.2, known to QEMU 7.2 and 10.0).
# One run of each libvirt at a time (a lock under /var/cache/miglab/libvirt); libvirtd is stopped
# again at the end, and the domain undefined.
set -euo pipefail
lockdir=${MIGLAB_CACHE:-/var/cache/miglab}/libvirt
if [ -z "${MIGLAB_LIBVIRT_LOCKED:-}" ]; then
  which=host; [ "${1:-}" != "--libvirt" ] || which=${2:-}
  mkdir -p "$lockdir"
  exec 9>"$lockdir/libvirt-$which.lock"
  flock 9
  export MIGLAB_LIBVIRT_LOCKED=1
fi
if [ "${1:-}" = "--libvirt" ]; then
  # Re-run this script inside the chroot, in a private mount namespace: /proc, /dev, /sys and
  # the directories it reads and writes are bound at identical paths, so paths mean the same
  # on both sides; the chroot's /run and /etc are its own, so its libvirtd never meets the
  # host's.  The namespace (and every mount) ends with the last process in it.
  ver=${2:?usage: libvirt-save.sh --libvirt VERSION ...}; shift 2
  root="$(cd "$(dirname "$0")/.." && pwd)/.qemu/libvirt-$ver/root"
  [ -x "$root/usr/sbin/libvirtd" ] || { echo "libvirt-save.sh: no libvirt $ver in $root (scripts/install-qemu.sh)" >&2; exit 1; }
  script=$(realpath "$0")
  guest=${MIGLAB_GUEST:-$(realpath "$(dirname "$script")/../.guest" 2>/dev/null || echo /tmp)}
  export MIGLAB_GUEST=$guest  # resolved here: the worktree's .guest symlink is not in the chroot
  dirs=()
  if [ "${1:-}" = "--restore" ]; then
    dirs+=("$(dirname "$(realpath "${2:?}")")")
    [ "${5:-}" != "--console" ] || dirs+=("$(dirname "$(realpath "${6:?}")")")
    [ "${3:-}" != "--console" ] || dirs+=("$(dirname "$(realpath "${4:?}")")")
  else mkdir -p "${1:?}"; dirs+=("$(realpath "$1")"); fi
  # shellcheck disable=SC2016  # expanded by the inner sh
  exec unshare -m --propagation private sh -ec '
    root=$1; n=$2; shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    mount --bind /tmp "$root/tmp"
    while [ "$n" -gt 0 ]; do mkdir -p "$root$1"; mount --bind "$1" "$root$1"; shift; n=$((n - 1)); done
    exec chroot "$root" "$@"' sh "$root" $((${#dirs[@]} + 2)) "$(dirname "$script")" "$guest" \
      "${dirs[@]}" bash "$script" "$@"
fi
restore="" run="" console=""
if [ "${1:-}" = "--restore" ]; then
  restore=$(realpath "${2:?usage: libvirt-save.sh --restore IMAGE [--run SECONDS] [--console FILE]}")
  shift 2
  while [ $# -gt 0 ]; do
    case $1 in
      --run) run=${2:?}; shift 2 ;;
      --console) console=$(realpath "${2:?}"); shift 2 ;;
      *) echo "libvirt-save.sh: unknown option $1" >&2; exit 2 ;;
    esac
  done
  set -- /tmp
fi
out=$(realpath "${1:?usage: libvirt-save.sh OUTDIR [FORMAT...] [managedsave]}"); shift
major=$(libvirtd --version | sed -n 's/.* \([0-9]*\)\.[0-9.]*$/\1/p')
formats=("$@")
if [ ${#formats[@]} -eq 0 ]; then
  formats=(raw gzip bzip2 xz lzop)
  [ "$major" -lt 11 ] || formats+=(zstd sparse)
  formats+=(managedsave)
fi
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
virsh_() { virsh -c qemu:///system "$@" >/dev/null; }
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
# On any exit: no domain left running or defined, no daemon, qemu.conf without a format.
cleanup() {
  if [ -f "$pidfile" ]; then
    for d in $(virsh -c qemu:///system list --name 2>/dev/null); do virsh_ destroy "$d" || true; done
    virsh_ undefine miglab-guest --managed-save 2>/dev/null || true
  fi
  stop
  sed -i '/^save_image_format = /d' "$conf"
  rm -f "${tmpxml:-}"
}
trap cleanup EXIT
start() {
  stop
  mkdir -p /run/libvirt
  libvirtd --daemon --pid-file "$pidfile" || fail "libvirtd did not start (its log follows)"
  for _ in $(seq 150); do virsh -c qemu:///system version >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "libvirtd started but does not answer on qemu:///system after 30 s"
}
# set_format FMT: save_image_format for the next daemon start (raw: libvirt's default)
set_format() {
  sed -i '/^save_image_format = /d' "$conf"
  [ "$1" = raw ] || echo "save_image_format = \"$1\"" >>"$conf"
}
g=${MIGLAB_GUEST:-$(realpath "$(dirname "$0")/../.guest")}
[ -f "$g/guest.json" ] || fail "no test guest in $g (scripts/build-guest.sh)"
field() { sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" "$g/guest.json"; }
tmpxml=$(mktemp --suffix=.xml)
# relocate XML CONSOLE > NEW: the guest's files from $g, every file chardev into CONSOLE
relocate() {
  local old
  old=$(sed -n 's|.*<kernel>\(.*\)/[^/]*</kernel>.*|\1|p' "$1" | head -n 1)
  sed -e "s|<source path='[^']*'|<source path='$2'|g" ${old:+-e "s|$old/|$g/|g"} "$1"
}
# beats FILE N SECONDS: wait until FILE holds N heartbeats
beats() {
  for _ in $(seq $(($3 * 2))); do [ "$(grep -c '^HB ' "$1" 2>/dev/null)" -ge "$2" ] && return 0; sleep 0.5; done
  return 1
}
if [ -n "$restore" ]; then
  start
  for d in $(virsh -c qemu:///system list --name); do virsh_ destroy "$d"; done
  [ -n "$console" ] || console=$(mktemp --suffix=.log)
  virsh -c qemu:///system save-image-dumpxml "$restore" >"$tmpxml.in"
  relocate "$tmpxml.in" "$console" >"$tmpxml"; rm -f "$tmpxml.in"
  if [ -n "$run" ]; then virsh_ restore "$restore" --xml "$tmpxml" --running; else
    virsh_ restore "$restore" --xml "$tmpxml" --paused; fi
  name=$(virsh -c qemu:///system list --name)
  name=${name%%$'\n'*}
  [ -n "$name" ] || fail "virsh restore left no running domain"
  [ -z "$run" ] || sleep "$run"
  virsh -c qemu:///system domstate "$name"
  virsh_ destroy "$name"
  exit 0
fi
# The test guest as libvirt runs it: TCG, qemu64, its disk read-only on virtio, ttyS0 into a
# file; no balloon or USB (libvirt's defaults), so only devices miglab models are saved.
cat >"$tmpxml" <<XML
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
    <serial type='file'><source path='$out/console-${formats[0]}.log'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
for f in "${formats[@]}"; do rm -f "$out/libvirt-$f.img" "$out/console-$f.log"; done
rm -f "$out/console-resumed.log"
prev=""
# resume NEXT: bring the guest back from the last image ($prev), its console into console-NEXT.log
resume() {
  local con=$out/console-$1.log
  if [ -z "$prev" ]; then
    virsh_ define "$tmpxml"
    virsh_ start miglab-guest
    beats "$con" 3 300 || fail "the guest did not beat within 300 s (console: $con)"
    return 0
  fi
  if [ "$prev" = managedsave ]; then
    virsh -c qemu:///system managedsave-dumpxml miglab-guest >"$tmpxml.in"
    relocate "$tmpxml.in" "$con" >"$tmpxml"
    virsh_ managedsave-define miglab-guest "$tmpxml"
    virsh_ start miglab-guest
  else
    virsh -c qemu:///system save-image-dumpxml "$out/libvirt-$prev.img" >"$tmpxml.in"
    relocate "$tmpxml.in" "$con" >"$tmpxml"
    virsh_ restore "$out/libvirt-$prev.img" --xml "$tmpxml" --running
  fi
  rm -f "$tmpxml.in"
  beats "$con" 4 120 || fail "the guest resumed from $prev did not beat within 120 s (console: $con)"
}
for fmt in "${formats[@]}"; do
  if [ "$fmt" = managedsave ]; then set_format raw; else set_format "$fmt"; fi
  start  # save_image_format is read when the daemon starts; no domain runs now
  if [ -z "$prev" ]; then virsh_ undefine miglab-guest --managed-save 2>/dev/null || true; fi
  resume "$fmt"
  if [ "$fmt" = managedsave ]; then
    virsh_ managedsave miglab-guest
    saved=/var/lib/libvirt/qemu/save/miglab-guest.save
    [ -f "$saved" ] || fail "virsh managedsave wrote no $saved"
    cp --sparse=always "$saved" "$out/libvirt-managedsave.img"
  else
    virsh_ save miglab-guest "$out/libvirt-$fmt.img"
  fi
  echo "$out/libvirt-$fmt.img"
  prev=$fmt
done
resume resumed
virsh_ destroy miglab-guest
