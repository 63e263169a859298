"""The running test guest saved by real libvirt in every ``save_image_format``, made once.

``scripts/libvirt-save.sh`` boots the Linux test guest of issue #8 once under a libvirt
(bookworm's 9.0 driving QEMU 7.2, or Debian 13's 11.3 driving QEMU 10.0 in its chroot) and
saves it in one format after another: ``virsh save``, ``virsh restore`` of that image with the
console moved to a new file, a few heartbeats, the next ``virsh save``; then ``virsh
managedsave`` and ``virsh start`` from it.  So every image is of the running guest, and every
image was restored by libvirt once: the console of the run after a restore must count on from
the console the image saved (:func:`~miglab.qemu.saved.judge_resumed_console`).

A chain costs a boot plus a save and a restore per format (about a minute and a half here), so
:func:`saved_by_libvirt` keeps each image with its two consoles under
``${MIGLAB_CACHE:-/var/cache/miglab}/libvirt``, named by the libvirt, its QEMU, the format and
a hash of the guest's files and of the script (which holds the domain XML): a second run only
reads them, and a changed guest or script makes new ones, never a stale image.  A file lock
per libvirt lets parallel callers make a chain once.

The domain XML inside an image names the console file and guest files of the run that made
it; ``libvirt-save.sh --restore`` (:func:`restore`) puts this checkout's guest and a console of
the caller's choosing in their place, so a cached image restores anywhere.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from miglab.qemu._process import QemuError
from miglab.qemu.capture_cache import CACHE_ENV
from miglab.qemu.guest import GuestSpec, default_guest
from miglab.qemu.saved import judge_resumed_console

__all__ = (
    "LIBVIRTS",
    "SCRIPT",
    "LibvirtRelease",
    "SavedImage",
    "libvirt_script",
    "restore",
    "saved_by_libvirt",
)

#: The script that drives libvirt (a checkout's ``scripts/libvirt-save.sh``).
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "libvirt-save.sh"


@dataclass(frozen=True, slots=True)
class LibvirtRelease:
    """One libvirt the project runs.

    Attributes:
        version: libvirt's release (``"9.0"``).
        qemu: the QEMU build it drives (``"7.2"``).
        options: ``libvirt-save.sh`` options selecting it (``("--libvirt", "11.3")``).
        formats: its ``save_image_format`` values, in the order a chain saves them, then
            ``"managedsave"`` (a raw image).
    """

    version: str
    qemu: str
    options: tuple[str, ...]
    formats: tuple[str, ...]


_COMPRESSED = ("gzip", "bzip2", "xz", "lzop")
LIBVIRTS = {
    r.version: r
    for r in (
        # libvirt 9.0 has no zstd (qemu_saveimage.h); sparse arrived with libvirt 11
        LibvirtRelease("9.0", "7.2", (), ("raw", *_COMPRESSED, "managedsave")),
        LibvirtRelease(
            "11.3", "10.0", ("--libvirt", "11.3"),
            ("raw", *_COMPRESSED, "zstd", "sparse", "managedsave"),
        ),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SavedImage:
    """One save image of the running guest and what the guest printed around it.

    Attributes:
        libvirt: the libvirt release that saved (and restored) it.
        format: its ``save_image_format``, or ``"managedsave"``.
        image: the image (in the cache: read it, write edits elsewhere).
        console: the console of the run this image saved, up to the save.
        resumed: the console of the run libvirt restored from this image.
    """

    libvirt: str
    format: str
    image: Path
    console: Path
    resumed: Path

    def survived(self, guest: GuestSpec | None = None) -> tuple[bool, str]:
        """``(survived, why)`` of libvirt's own restore of this image."""
        spec = guest or default_guest()
        return judge_resumed_console(
            self.console.read_text(), self.resumed.read_text(), spec.disk_md5
        )


def libvirt_script(
    libvirt: str, *args: str, guest: GuestSpec | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``scripts/libvirt-save.sh [--libvirt VER] ARGS`` for ``libvirt`` (output captured).

    The script runs ``guest`` (default: :func:`~miglab.qemu.guest.default_guest`).
    """
    env = dict(os.environ)
    env["MIGLAB_GUEST"] = str((guest or default_guest()).kernel.parent.resolve())
    return subprocess.run(
        ["bash", str(SCRIPT), *LIBVIRTS[libvirt].options, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def restore(
    image: Path, libvirt: str, *, run: float | None = None, console: Path | None = None
) -> str:
    """``virsh restore`` ``image`` with ``libvirt``: the domain state it prints.

    Paused unless ``run`` (then running for ``run`` seconds, the console into ``console``).

    Raises:
        QemuError: the script failed (its message ends the error).
    """
    args = ["--restore", str(image)]
    if run is not None:
        args += ["--run", str(run)]
    if console is not None:
        args += ["--console", str(console)]
    done = libvirt_script(libvirt, *args, timeout=600)
    if done.returncode != 0:
        raise QemuError(f"libvirt {libvirt}: restore of {image} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _key(release: LibvirtRelease, guest: GuestSpec) -> str:
    h = hashlib.sha256()
    for path in (guest.kernel, guest.initrd, SCRIPT):
        with path.open("rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    for part in (guest.disk_md5, guest.append):
        h.update(part.encode() + b"\0")
    return f"{release.version}-qemu{release.qemu}-{h.hexdigest()[:12]}"


def _entry(root: Path, key: str, fmt: str, libvirt: str) -> SavedImage:
    stem = root / f"{key}-{fmt}"
    return SavedImage(
        libvirt,
        fmt,
        stem.with_name(stem.name + ".img"),
        stem.with_name(stem.name + ".console.log"),
        stem.with_name(stem.name + ".resumed.log"),
    )


def saved_by_libvirt(
    libvirt: str,
    formats: Sequence[str] | None = None,
    *,
    guest: GuestSpec | None = None,
    directory: str | os.PathLike[str] | None = None,
) -> dict[str, SavedImage]:
    """format -> the running guest saved by ``libvirt`` in it (default: every format it has).

    Images missing from the cache are made in one chain (one boot), in
    :attr:`LibvirtRelease.formats` order.

    Raises:
        QemuError: the script failed (a guest that did not beat after a restore, a
            libvirtd that did not start...): its message ends the error.
    """
    release = LIBVIRTS[libvirt]
    wanted = tuple(formats or release.formats)
    unknown = set(wanted) - set(release.formats)
    if unknown:
        raise ValueError(f"libvirt {libvirt} has no save format {sorted(unknown)}")
    spec = guest or default_guest()
    root = Path(directory or Path(os.environ.get(CACHE_ENV) or "/var/cache/miglab") / "libvirt")
    root.mkdir(parents=True, exist_ok=True)
    key = _key(release, spec)
    entries = {f: _entry(root, key, f, libvirt) for f in release.formats}
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [
            f
            for f in release.formats
            if f in wanted and not all(p.is_file() for p in _paths(entries[f]))
        ]
        if missing:
            _make(release, missing, spec, root, entries)
    return {f: entries[f] for f in wanted}


def _paths(entry: SavedImage) -> tuple[Path, Path, Path]:
    return entry.image, entry.console, entry.resumed


def _make(
    release: LibvirtRelease,
    formats: list[str],
    guest: GuestSpec,
    root: Path,
    entries: dict[str, SavedImage],
) -> None:
    """Run one chain of ``formats`` in a scratch directory of ``root``; move its files in."""
    work = Path(tempfile.mkdtemp(prefix=".chain-", dir=root))
    try:
        done = libvirt_script(release.version, str(work), *formats, guest=guest)
        if done.returncode != 0:
            raise QemuError(
                f"libvirt {release.version}: scripts/libvirt-save.sh {' '.join(formats)} "
                f"failed: {done.stderr.strip()}"
            )
        after = [*formats[1:], "resumed"]  # the run after each restore has the next console
        for fmt, nxt in zip(formats, after, strict=True):
            entry = entries[fmt]
            shutil.copyfile(work / f"console-{fmt}.log", entry.console)
            shutil.copyfile(work / f"console-{nxt}.log", entry.resumed)
            os.replace(work / f"libvirt-{fmt}.img", entry.image)  # same file system: sparse stays
    finally:
        shutil.rmtree(work, ignore_errors=True)
