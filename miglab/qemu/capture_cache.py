"""Captures made once and shared: a cache of live captures keyed by what made them.

A live capture boots the guest (10-20 s under TCG here) and migrates it; a matrix of 12 pairs
x 2 machine families x 2 device sets needs each source capture many times.
:func:`cached_capture` makes a capture once per (build, machine, device set, guest) and keeps
it under ``${MIGLAB_CACHE:-/var/cache/miglab}/captures``, named by the build, the machine, the
set and a hash of the guest's files and of the set's options: a rebuilt guest or a changed
set gives a new name, never a stale capture.  A file lock per entry lets parallel workers
(pytest-xdist, scripts) ask for the same capture: one makes it, the others wait and read it.
An empty cache only costs time.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
from pathlib import Path

from miglab.qemu._process import QemuError
from miglab.qemu.capturing import Capture, capture, sidecar_path
from miglab.qemu.guest import DeviceSet, GuestSpec, default_guest, device_set

__all__ = ("CACHE_ENV", "cache_dir", "cached_capture", "capture_key")

#: Environment variable naming the cache root (default ``/var/cache/miglab``).
CACHE_ENV = "MIGLAB_CACHE"


def cache_dir() -> Path:
    """``${MIGLAB_CACHE:-/var/cache/miglab}/captures``."""
    return Path(os.environ.get(CACHE_ENV) or "/var/cache/miglab") / "captures"


def capture_key(qemu: str, machine: str, devices: DeviceSet, guest: GuestSpec) -> str:
    """``<build>-<machine>-<set>-<hash>``: the hash covers the guest's files (kernel, initrd,
    disk checksum), its command line and memory, and the set's options."""
    h = hashlib.sha256()
    for path in (guest.kernel, guest.initrd):
        with path.open("rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    for part in (guest.disk_md5, guest.append, guest.memory, *devices.options):
        h.update(part.encode() + b"\0")
    return f"{qemu}-{machine}-{devices.name}-{h.hexdigest()[:12]}"


def cached_capture(
    qemu: str,
    machine: str,
    devices: str | DeviceSet,
    *,
    guest: GuestSpec | None = None,
    directory: str | os.PathLike[str] | None = None,
    attempts: int = 2,
) -> Capture:
    """The live capture of ``guest`` on QEMU ``qemu`` running ``machine`` with ``devices``.

    Made by :func:`~miglab.qemu.capture` the first time (under an exclusive lock, so parallel
    callers make it once), read from the cache afterwards.  A capture that fails (a loaded
    machine can make a boot miss its deadline) is tried ``attempts`` times.

    Raises:
        QemuError: every attempt failed.
    """
    spec = guest or default_guest()
    dset = device_set(devices)
    root = Path(directory) if directory is not None else cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    stream = root / f"{capture_key(qemu, machine, dset, spec)}.mig"
    with (root / f"{stream.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stream.is_file() and sidecar_path(stream).is_file():
            # The sidecar names the guest files of the checkout that made it, which may be
            # gone; the key says this guest's files are the same bytes, so use this guest.
            return dataclasses.replace(Capture.load(stream), guest=spec)
        for _ in range(attempts - 1):
            try:
                return capture(stream, qemu=qemu, machine=machine, devices=dset, guest=spec)
            except QemuError:
                continue
        return capture(stream, qemu=qemu, machine=machine, devices=dset, guest=spec)
