"""Run a program of a Debian chroot with the caller's files visible, mounting nothing for good.

QEMU 5.2 and 11.1 are Debian 11 and 13 packages: they need their own distribution's libraries,
so ``scripts/install-qemu.sh`` installs each in a chroot under the project's ``.qemu``.  A run
goes through a *private mount namespace* (``unshare -m --propagation private``): inside it,
``/proc``, ``/dev``, ``/sys`` and the host directories the run needs are bound into the chroot
at identical paths, then ``chroot ROOT`` executes the program.  The namespace, and with it every
mount, ends with the last process in it (QEMU and the ``cat`` of an ``exec:`` migration), so the
host's mount table never changes.  Each step ``exec``s the next, so the caller's PID is QEMU's.

Which host directories: ``/tmp`` and the temp dir (QMP sockets, scratch streams), the current
directory (the run starts there too), the directory of every path in the arguments
(``exec:cat > FILE``, ``-kernel``, ``file=IMG``, ``unix:SOCK``; relative ones from the current
directory) together with the directories of the symlinks on the way to it (so
``.guest/vmlinuz`` through a symlinked ``.guest`` resolves as on the host), and any the caller
names.  The chroot's own system directories (``/usr``, ``/etc``...) are never covered by an
argument's path: an argument naming the host's ``/usr/share/qemu`` means the chroot's.  A
directory the caller names is the caller's word and is bound even below them (the capture
cache ``/var/cache/miglab``), though never over a system directory itself.  The mount
points are made as empty directories inside the chroot and stay there (plain directories,
not mounts).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ("chroot_command", "host_dirs")

#: Runs as ``sh -ec SCRIPT miglab-chroot ROOT CWD N DIR... PROGRAM ARGS...`` in the new
#: namespace: bind N host dirs at the same paths under ROOT, then run PROGRAM in ROOT from CWD.
_SCRIPT = """
root=$1 cwd=$2 n=$3; shift 3
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
while [ "$n" -gt 0 ]; do
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  n=$((n - 1)); shift
done
exec chroot "$root" /bin/sh -c 'cd "$1" 2>/dev/null || cd /; shift; exec "$@"' sh "$cwd" "$@"
"""

#: Paths inside an argument: a run of non-separators holding a '/', starting after '=', ':',
#: '>' or a space and ending at a comma, quote or space (``unix:/tmp/q.sock,server=on``,
#: ``exec:cat > /tmp/s.mig``, ``file=.guest/disk.img,format=raw``).
_PATH = re.compile(r"[^\s,'\"=:<>|]*/[^\s,'\"]*")
#: The chroot's own tree: host directories here are never bound over it.
_SYSTEM = tuple(
    map(
        Path,
        (
            "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
            "/proc", "/run", "/sbin", "/sys", "/usr", "/var",
        ),
    )
)  # fmt: skip
#: Exceptions inside ``_SYSTEM``: scratch space a caller may well use.
_SCRATCH = (Path("/var/tmp"),)


def _dirs_for(path: Path) -> set[Path]:
    """Real host dirs to bind so that ``path`` names the same file inside the chroot."""
    dirs = set()
    here = Path("/")
    for part in path.parts[1:]:
        step = here / part
        if step.is_symlink():
            dirs.add(here)  # the link itself must be there, and where it leads
            step = step.resolve()
        here = step
    while not here.is_dir():  # a file, or one QEMU is to create
        here = here.parent
    dirs.add(here.resolve())
    return dirs


def _bindable(path: Path, root: Path, *, named: bool = False) -> bool:
    """Whether to bind host dir ``path``; ``named``: the caller named it (not an argument)."""
    if path == Path("/") or path.is_relative_to(root) or path in _SYSTEM:
        return False
    if named or any(path.is_relative_to(s) for s in _SCRATCH):
        return True
    return not any(path.is_relative_to(s) for s in _SYSTEM)


def host_dirs(root: Path, argv: Sequence[str], extra: Iterable[Path] = ()) -> list[Path]:
    """Return the host dirs a chroot run of ``argv`` binds, outermost first, none nested.

    Args:
        root: the chroot (its own paths are never bound).
        argv: the command line; every path in it is made visible (a relative one: from the
            current dir, which the run starts in).
        extra: further dirs (or files: their dir) the caller needs inside, bound even below
            the chroot's system dirs (never over one of them itself).
    """
    cwd = Path.cwd()
    wanted = {Path("/tmp"), Path(tempfile.gettempdir()), cwd}
    for arg in argv:
        wanted.update(cwd / p for p in _PATH.findall(arg))  # an absolute p replaces cwd
    named = {Path(os.path.abspath(path)) for path in extra}
    dirs: set[Path] = set()
    for path in wanted | named:
        dirs.update(
            d
            for d in _dirs_for(Path(os.path.abspath(path)))
            if _bindable(d, root, named=path in named)
        )
    kept: list[Path] = []
    for d in sorted(dirs, key=lambda p: p.parts):
        if not any(d.is_relative_to(k) for k in kept):
            kept.append(d)
    return kept


def chroot_command(root: Path, argv: Sequence[str], extra: Iterable[Path] = ()) -> list[str]:
    """Return an argv that runs ``argv`` (a program inside ``root``) as described above.

    Needs root (``unshare -m``); ``argv[0]`` is a path inside the chroot.
    """
    root = root.resolve()
    dirs = host_dirs(root, argv, extra)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-ec",
        _SCRIPT,
        "miglab-chroot",
        str(root),
        str(Path.cwd().resolve()),
        str(len(dirs)),
        *map(str, dirs),
        *argv,
    ]
