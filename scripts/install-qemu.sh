#!/usr/bin/env bash
# Install the four QEMU builds miglab uses as data source and judge, side by side:
#   * 5.2  - Debian 11's qemu-system-x86, in a `debootstrap --variant=minbase bullseye`
#            chroot: .qemu/5.2/root
#   * 7.2  - Debian 12's own qemu-system-x86 (the system package, /usr/bin)
#   * 10.0 - bookworm-backports packages, unpacked (not installed) into .qemu/10.0
#   * 11.1 - trixie-backports qemu-system-x86 in a Debian 13 chroot: .qemu/11.1/root
#            (it needs glibc >= 2.41, newer than Debian 12's)
#   * libvirt 11.3 - Debian 13's libvirt with Debian 13's QEMU 10.0, in a chroot of its own:
#            .qemu/libvirt-11.3/root (bookworm's libvirt 9.0 on the host drives 7.2; the
#            two daemons never meet).  scripts/libvirt-save.sh --libvirt 11.3 runs it.
# miglab.qemu runs a chroot build in a private mount namespace per run, so nothing it
# mounts outlives the QEMU process; this script mounts only inside such namespaces too.
#
# Versions are pinned.  The mirror URI is read from the machine's own apt sources (no host
# name is written here), and the host's apt configuration is left as it is: the 10.0 debs
# come through a private apt configuration in the cache (whether or not the host lists
# bookworm-backports), the chroots have their own apt.
# The expensive parts are cached outside the project in ${MIGLAB_CACHE:-/var/cache/miglab}:
# downloaded debs, and a tarball of each finished chroot keyed on its pinned version, so
# setting up a fresh clone on the same machine takes seconds.  Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
QEMU52_VERSION="${QEMU52_VERSION:-1:5.2+dfsg-11+deb11u3}"
QEMU100_VERSION="${QEMU100_VERSION:-1:10.0.2+ds-2+deb13u1~bpo12+1}"
QEMU111_VERSION="${QEMU111_VERSION:-1:11.1.3+ds-2~bpo13+1}"
LIBVIRT113_VERSION="${LIBVIRT113_VERSION:-11.3.0-3+deb13u3}"
QEMU_TRIXIE_VERSION="${QEMU_TRIXIE_VERSION:-1:10.0.13+ds-0+deb13u1}"  # with libvirt 11.3
CACHE="${MIGLAB_CACHE:-/var/cache/miglab}"
#: Bump when the way a chroot is made changes, so cached tarballs are rebuilt.
CHROOT_RECIPE=1
#: Written by an earlier version of this script; this one never touches the host's sources.
OLD_SOURCE=/etc/apt/sources.list.d/miglab-backports.list
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$CACHE" .qemu
exec 9>"$CACHE/lock"
flock 9  # one setup at a time may fill the cache (CI and a developer on the same machine)

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
say() { echo "install-qemu: $*"; }

host_install() {  # CMD PACKAGE: install a Debian 12 package on the host if CMD is missing
  local t0
  command -v "$1" >/dev/null && return
  t0=$(now)
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null
  say "host: installed $2 in $(took "$t0") s"
}

host_targets() {  # "URI SUITE" for every index target the host's apt sources configure
  # shellcheck disable=SC2016  # apt's own $(FIELD) syntax
  apt-get indextargets --format '$(SITE) $(RELEASE)' | sort -u
}

mirror_uri() {  # the Debian archive URI the host's apt already uses for bookworm
  local uri
  uri=$(host_targets | awk '$2 == "bookworm" {print $1; exit}')
  [ -n "$uri" ] || { echo "install-qemu: no bookworm source in the apt configuration" >&2; exit 1; }
  echo "${uri%/}"
}

remove_old_source() {  # the host source file an earlier version of this script wrote
  [ -f "$OLD_SOURCE" ] || return 0
  if grep -qvE '^deb \S+ bookworm-backports main$' "$OLD_SOURCE"; then
    say "leaving $OLD_SOURCE: it holds more than miglab wrote"
    return
  fi
  rm -f "$OLD_SOURCE"
  say "removed $OLD_SOURCE (miglab now uses a private apt configuration)"
}

private_apt() {  # apt-get on a private source list, lists and package cache under $CACHE/apt
  local dir="$CACHE/apt"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/parts"
  echo "deb $URI bookworm-backports main" >"$dir/sources.list"
  apt-get -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts="$dir/parts" \
    -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
    -o APT::Sandbox::User=root "$@"  # root writes the cache: no _apt sandbox there
}

install_qemu100() {
  local dest=.qemu/10.0 debs="$CACHE/debs/10.0" version=$QEMU100_VERSION p
  local packages=(qemu-system-x86 qemu-system-common qemu-system-data
    qemu-system-modules-opengl qemu-system-modules-spice)
  if [ -x "$dest/usr/bin/qemu-system-x86_64" ]; then say "10.0: present"; return; fi
  local t0; t0=$(now)
  mkdir -p "$debs"
  local missing=()
  for p in "${packages[@]}"; do
    ls "$debs/${p}_${version//:/%3a}_"*.deb >/dev/null 2>&1 || missing+=("$p=$version")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    private_apt update -qq
    (cd "$debs" && private_apt download -qq "${missing[@]}")
  fi
  mkdir -p "$dest"
  for p in "${packages[@]}"; do dpkg -x "$debs/${p}_${version//:/%3a}_"*.deb "$dest"; done
  say "10.0: unpacked $version in $(took "$t0") s"
}

remove_tree() {  # rm -rf DIR, but never through a mount (a leaked bind of /dev or /tmp)
  local dir=$1
  [ -e "$dir" ] || return 0
  if findmnt -rn -o TARGET | grep -q "^$(realpath "$dir")\(/\|$\)"; then
    echo "install-qemu: something is mounted under $dir; not removing it" >&2
    exit 1
  fi
  rm -rf "$dir"
}

in_namespace() {  # ROOT DEBS CMD...: run CMD in ROOT, /proc, /dev, DEBS mounted only meanwhile
  local root=$1 debs=$2; shift 2
  # shellcheck disable=SC2016  # expanded by the inner sh
  unshare -m --propagation private sh -ec '
    root=$1 debs=$2; shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --bind "$debs" "$root/var/cache/apt/archives"  # downloads land in the cache
    exec chroot "$root" "$@"' sh "$root" "$debs" "$@"
}

build_chroot() {  # NAME SUITE TARBALL EXTRA-SUITE APT-INSTALL-ARGS...
  local name=$1 suite=$2 tarball=$3 extra=$4; shift 4
  local build="$CACHE/build/$name" debs="$CACHE/debs/$suite" t0
  t0=$(now)
  remove_tree "$build"
  mkdir -p "$CACHE/build" "$CACHE/debootstrap/$suite" "$(dirname "$tarball")"
  # debootstrap mounts /proc and /sys in the target itself: keep those mounts private too.
  unshare -m --propagation private debootstrap --variant=minbase \
    --cache-dir="$CACHE/debootstrap/$suite" "$suite" "$build" "$URI" >"$build.log" 2>&1 ||
    { tail -20 "$build.log" >&2; exit 1; }
  say "$name: debootstrap $suite in $(took "$t0") s"
  {
    echo "deb $URI $suite main"
    [ -z "$extra" ] || echo "deb $URI $extra main"
  } >"$build/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' >"$build/usr/sbin/policy-rc.d"  # start no services
  chmod +x "$build/usr/sbin/policy-rc.d"
  mkdir -p "$debs/partial"
  in_namespace "$build" "$debs" apt-get update -qq
  in_namespace "$build" "$debs" apt-get install -y -qq --no-install-recommends "$@" \
    >>"$build.log" 2>&1 || { tail -20 "$build.log" >&2; exit 1; }
  # debootstrap's own debs (also in its --cache-dir), apt's lists and caches, docs
  rm -rf "$build"/var/cache/apt/archives/*.deb "$build"/var/cache/apt/*.bin \
    "$build"/var/lib/apt/lists/* "$build"/usr/share/doc "$build"/usr/share/man
  tar -C "$build" --zstd -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  remove_tree "$build"
  rm -f "$build.log"
  say "$name: built and cached $(basename "$tarball") in $(took "$t0") s"
}

install_chroot() {  # NAME SUITE VERSION EXTRA-SUITE APT-INSTALL-ARGS...
  local name=$1 suite=$2 version=$3 extra=$4; shift 4
  local dest=.qemu/$name stamp="$suite $version recipe $CHROOT_RECIPE" t0
  local tarball="$CACHE/chroots/qemu-$name-$suite-${version//[:~]/_}-r$CHROOT_RECIPE.tar.zst"
  if [ -x "$dest/root/usr/bin/qemu-system-x86_64" ] && [ "$(cat "$dest/stamp" 2>/dev/null)" = "$stamp" ]; then
    say "$name: present"
    return
  fi
  [ -f "$tarball" ] || build_chroot "$name" "$suite" "$tarball" "$extra" "$@"
  t0=$(now)
  remove_tree "$dest"
  mkdir -p "$dest/root"
  tar -C "$dest/root" --zstd -xf "$tarball"
  echo "$stamp" >"$dest/stamp"
  say "$name: unpacked $(basename "$tarball") in $(took "$t0") s"
}

t_all=$(now)
remove_old_source
host_install qemu-system-x86_64 qemu-system-x86
host_install debootstrap debootstrap
host_install zstd zstd
URI=$(mirror_uri)
install_qemu100
install_chroot 5.2 bullseye "$QEMU52_VERSION" "" \
  "qemu-system-x86=$QEMU52_VERSION" "qemu-system-data=$QEMU52_VERSION" seabios ipxe-qemu
install_chroot 11.1 trixie "$QEMU111_VERSION" trixie-backports -t trixie-backports \
  "qemu-system-x86=$QEMU111_VERSION" "qemu-system-data=$QEMU111_VERSION" seabios ipxe-qemu
# Debian 13 as it ships: libvirt 11.3 with trixie's QEMU 10.0 (not 11.1: QEMU >= 11.0 refuses
# "fd:" migration from a file, which libvirt 11.3 uses to restore a raw image).  The
# compressors are the programs libvirt pipes a save image through (save_image_format).
install_chroot libvirt-11.3 trixie "${LIBVIRT113_VERSION}_qemu$QEMU_TRIXIE_VERSION" "" \
  "libvirt-daemon=$LIBVIRT113_VERSION" "libvirt-daemon-driver-qemu=$LIBVIRT113_VERSION" \
  "libvirt-clients=$LIBVIRT113_VERSION" "qemu-system-x86=$QEMU_TRIXIE_VERSION" \
  "qemu-system-data=$QEMU_TRIXIE_VERSION" seabios ipxe-qemu gzip bzip2 xz-utils lzop zstd
say "all four builds and libvirt 11.3 ready in $(took "$t_all") s"
