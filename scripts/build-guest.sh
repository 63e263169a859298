#!/usr/bin/env bash
# Build the small Linux guest whose heartbeat judges whether a migrated VM survived.
#
#   .guest/vmlinuz        Debian 12's kernel (linux-image-$KVER), unmodified
#   .guest/vmlinux        the same kernel uncompressed (ELF, booted through its PVH entry)
#   .guest/initrd.gz      gzip'd newc cpio: static busybox, the modules for miglab's device
#                         sets (with their modules.dep, made by busybox depmod), and /init
#   .guest/disk.img       4 MiB raw disk with deterministic content, the guest's /dev/vda
#   .guest/disk.md5       md5 of disk.img, as the heartbeat prints it
#   .guest/guest.json     what was built from what (versions, kernel args, files)
#
# /init loads the modules, brings every NIC up by DHCP (each user-mode network answers on its
# own subnet), then prints on ttyS0, about twice a second:
#   HB <counter> <uptime> <md5 of /dev/vda read with O_DIRECT> taint=<n> <ifname>=ok|fail ...
# A boot prints "MIGLAB-BOOT" first, so a reboot is visible; oopses and panics reach ttyS0
# through console=ttyS0 loglevel=5 (the kernel command line, APPEND below, is in guest.json).
#
# The packages come from the machine's own apt sources with `apt-get download` (exact versions
# pinned below) and are unpacked with dpkg -x: nothing is installed.  Downloads are cached in
# ${MIGLAB_CACHE:-/var/cache/miglab}/guest, so a fresh clone rebuilds in seconds; the output is
# byte-reproducible (sorted cpio with fixed metadata, gzip -n), and each file is replaced by a
# rename, so a QEMU already running on the old one is undisturbed.  Idempotent: when every
# artifact is newer than this script, a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
KVER="${MIGLAB_GUEST_KVER:-6.1.0-57-amd64}"
KERNEL_VERSION="${MIGLAB_GUEST_KERNEL_VERSION:-6.1.192-3}"
BUSYBOX_VERSION="${MIGLAB_GUEST_BUSYBOX_VERSION:-1:1.35.0-4+deb12u1+b1}"
CACHE="${MIGLAB_CACHE:-/var/cache/miglab}/guest"
OUT="${MIGLAB_GUEST_DIR:-.guest}"
SCRIPT="$PWD/scripts/build-guest.sh"
DISK_MIB=4
# console on the first 16550 (isa-serial); few boot messages but every warning, oops and panic
# (loglevel=5); hang on panic so its message stays the last word; the kernel at its fixed
# physical address (nokaslr) so a test can aim at its text; freed pages zeroed (init_on_free=1),
# so the boot's leftovers travel as zero pages and streams stay smaller.
APPEND="console=ttyS0 quiet loglevel=5 panic=0 nokaslr init_on_free=1"

# The driver of every device in miglab's device sets (miglab/qemu/devices.py); dependencies
# are added from each module's own "depends" field.  8250 serial and virtio-mmio are built in.
MODULES="virtio_pci virtio_net virtio_blk virtio_console virtio_balloon virtio_rng
  virtio_scsi sd_mod e1000 e1000e 8139cp 8139too xhci_pci ehci_pci uhci_hcd usbhid hid_generic
  ahci snd_hda_intel snd_hda_codec_generic i6300esb pvpanic_pci pvpanic_mmio"

mkdir -p "$OUT"
fresh=1
for f in vmlinux vmlinuz initrd.gz disk.img disk.md5 guest.json; do
  [ "$OUT/$f" -nt "$SCRIPT" ] || fresh=0
done
if [ "$fresh" = 1 ]; then
  echo "build-guest: $OUT is up to date ($KVER, busybox $BUSYBOX_VERSION)"
  exit 0
fi

# --- download (cached) -----------------------------------------------------------------------
mkdir -p "$CACHE/debs"
kdeb="$CACHE/debs/linux-image-${KVER}_${KERNEL_VERSION}_amd64.deb"
bdeb="$CACHE/debs/busybox-static_${BUSYBOX_VERSION/:/%3a}_amd64.deb"
if [ ! -s "$kdeb" ] || [ ! -s "$bdeb" ]; then
  (cd "$CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root \
     "linux-image-$KVER=$KERNEL_VERSION" "busybox-static=$BUSYBOX_VERSION")
fi

# --- unpack (cached) -------------------------------------------------------------------------
root="$CACHE/root-$KVER"
if [ ! -f "$root/.unpacked" ]; then
  rm -rf "$root"
  dpkg -x "$kdeb" "$root"
  dpkg -x "$bdeb" "$root"
  touch "$root/.unpacked"
fi
busybox="$root/bin/busybox"
moddir="$root/lib/modules/$KVER"

# --- module closure --------------------------------------------------------------------------
declare -A path_of=()
while IFS= read -r ko; do
  name=$(basename "$ko" .ko); path_of[${name//-/_}]="$ko"
done < <(find "$moddir/kernel" -name '*.ko')
declare -A wanted=()
queue=($MODULES)
while [ ${#queue[@]} -gt 0 ]; do
  m=${queue[0]}; queue=("${queue[@]:1}")
  [ -n "${wanted[$m]:-}" ] && continue
  ko="${path_of[$m]:-}"
  if [ -z "$ko" ]; then
    grep -q "/${m//_/[-_]}.ko$" "$moddir/modules.builtin" \
      || { echo "build-guest: module $m is neither a file nor built in" >&2; exit 1; }
    continue
  fi
  wanted[$m]="$ko"
  deps=$(tr '\0' '\n' < "$ko" | sed -n 's/^depends=//p' | head -1)
  for d in ${deps//,/ }; do queue+=("${d//-/_}"); done
done

# --- initramfs tree --------------------------------------------------------------------------
stage=$(mktemp -d /tmp/miglab-guest.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,etc} "$stage/lib/modules/$KVER"
cp "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
for m in "${!wanted[@]}"; do
  rel=${wanted[$m]#"$moddir/"}
  mkdir -p "$stage/lib/modules/$KVER/$(dirname "$rel")"
  cp "${wanted[$m]}" "$stage/lib/modules/$KVER/$rel"
done
cp "$moddir/modules.builtin" "$moddir/modules.order" "$stage/lib/modules/$KVER/"
"$busybox" depmod -b "$stage" "$KVER"

cat > "$stage/bin/dhcp-hook" <<'EOF'
#!/bin/sh
# udhcpc hook: configure the leased address (no routes: each subnet is reached directly)
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
               echo "$router" > "/tmp/gw.$interface" ;;
esac
EOF
chmod +x "$stage/bin/dhcp-hook"

cat > "$stage/init" <<EOF
#!/bin/sh
# miglab guest init: load drivers, bring NICs up, then print a heartbeat forever.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
read up idle < /proc/uptime
echo "MIGLAB-BOOT $KVER uptime=\$up"
for m in $(echo $MODULES); do modprobe "\$m" || echo "MIGLAB-MODULE-FAIL \$m"; done
read up idle < /proc/uptime
echo "MIGLAB-MODULES uptime=\$up"
ip link set lo up
ifs=\$(ls /sys/class/net | grep -v '^lo\$')
for i in \$ifs; do
  ip link set "\$i" up
  udhcpc -i "\$i" -s /bin/dhcp-hook -n -q -f -t 5 -T 1 >/dev/null 2>&1 &
done
wait
ready=""
for i in \$ifs; do ready="\$ready \$i=\$(ip -4 -o addr show dev "\$i" | sed -n 's/.* inet \\([^ ]*\\).*/\\1/p')"; done
read up idle < /proc/uptime
echo "MIGLAB-READY uptime=\$up\$ready"
n=0
while :; do
  n=\$((n + 1))
  read up idle < /proc/uptime
  sum=\$(dd if=/dev/vda bs=64k iflag=direct 2>/dev/null | md5sum)
  nets=""
  for i in \$ifs; do
    gw=\$(cat "/tmp/gw.\$i" 2>/dev/null)
    r=fail
    [ -n "\$gw" ] && ping -c 1 -W 1 -q "\$gw" >/dev/null 2>&1 && r=ok
    nets="\$nets \$i=\$r"
  done
  echo "HB \$n \$up \${sum%% *} taint=\$(cat /proc/sys/kernel/tainted)\$nets"
  sleep 0.3
done
EOF
chmod +x "$stage/init"

# newc cpio written here rather than by cpio(1): fixed inode numbers, owners and mtimes make
# the initramfs byte-reproducible.
python3 - "$stage" <<'EOF' | gzip -9n > "$OUT/initrd.gz.tmp"
import os, stat, sys
root, out = sys.argv[1], sys.stdout.buffer
def entry(ino, name, mode, data):
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    out.write(head + b"\0" * (-len(head) % 4) + data + b"\0" * (-len(data) % 4))
paths = sorted(os.path.relpath(os.path.join(d, n), root)
               for d, dirs, files in os.walk(root) for n in dirs + files)
for ino, rel in enumerate(paths, 1):
    full = os.path.join(root, rel)
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        data = os.readlink(full).encode()
    elif stat.S_ISREG(st.st_mode):
        data = open(full, "rb").read()
    else:
        data = b""
    entry(ino, rel, st.st_mode, data)
entry(0, "TRAILER!!!", 0, b"")
EOF
mv "$OUT/initrd.gz.tmp" "$OUT/initrd.gz"
cp "$root/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
# The bzImage's xz payload is the ELF vmlinux with a PVH entry note: QEMU boots that directly
# (pvh.bin option ROM), skipping an in-guest xz decompression that costs ~10 s under TCG.
python3 - "$OUT/vmlinuz" "$OUT/vmlinux" <<'EOF'
import lzma, os, sys
image = open(sys.argv[1], "rb").read()
payload = image[image.index(b"\xfd7zXZ\x00"):]
elf = lzma.LZMADecompressor().decompress(payload)
assert elf[:4] == b"\x7fELF", "the kernel's xz payload is not an ELF"
open(sys.argv[2] + ".tmp", "wb").write(elf)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
EOF

# --- disk: sector i holds "miglab disk sector i" padded with its own index byte -------------
python3 - "$OUT/disk.img" "$DISK_MIB" <<'EOF'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
with open(path + ".tmp", "wb") as f:
    for i in range(mib * 2048):
        head = b"miglab disk sector %d\n" % i
        f.write(head + bytes([i & 0xFF]) * (512 - len(head)))
os.replace(path + ".tmp", path)
EOF
md5sum "$OUT/disk.img" | cut -d' ' -f1 > "$OUT/disk.md5"

cat > "$OUT/guest.json" <<EOF
{
  "kernel": "vmlinux",
  "initrd": "initrd.gz",
  "disk": "disk.img",
  "disk_md5": "$(cat "$OUT/disk.md5")",
  "append": "$APPEND",
  "kernel_package": "linux-image-$KVER=$KERNEL_VERSION",
  "busybox_package": "busybox-static=$BUSYBOX_VERSION",
  "modules": "$(echo "${!wanted[@]}" | tr ' ' '\n' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')"
}
EOF
echo "build-guest: $OUT/vmlinuz $OUT/initrd.gz ($(stat -c %s "$OUT/initrd.gz") bytes," \
  "${#wanted[@]} modules) $OUT/disk.img md5 $(cat "$OUT/disk.md5")"
