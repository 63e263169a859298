"""Find the QEMU builds miglab drives, and describe how to run them.

Two builds are supported (see QEMU-FORMAT.md section 9): Debian 12's system QEMU 7.2 on
``PATH``, and QEMU 10.0 unpacked (not installed) by ``scripts/install-qemu.sh`` under the
project's ``.qemu/10.0``.  The 10.0 build needs its own firmware dirs (``-L``) and its own
module dir, or it loads 7.2's modules and aborts.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from miglab.errors import MiglabError

__all__ = ("QEMU_VERSIONS", "QemuLocation", "QemuNotFound", "available", "locate")

QEMU_VERSIONS = ("7.2", "10.0")

#: Binary name of the x86 system emulator (the only target miglab uses).
_EXECUTABLE = "qemu-system-x86_64"
#: Environment variable overriding where the unpacked QEMU 10.0 tree lives.
_QEMU10_ENV = "MIGLAB_QEMU10_DIR"


class QemuNotFound(MiglabError, FileNotFoundError):
    """The requested QEMU version is not installed (run ``scripts/install-qemu.sh``)."""


@dataclass(frozen=True, slots=True)
class QemuLocation:
    """Where one QEMU build lives: its binary, extra environment and ``-L`` dirs."""

    executable: Path
    env: Mapping[str, str]
    data_dirs: tuple[Path, ...]


def _system_qemu() -> QemuLocation:
    found = shutil.which(_EXECUTABLE)
    if found is None:
        raise QemuNotFound(f"{_EXECUTABLE} not found on PATH (QEMU 7.2 is the system QEMU)")
    return QemuLocation(Path(found), {}, ())


def _unpacked_qemu10() -> QemuLocation:
    default = Path(__file__).resolve().parents[2] / ".qemu" / "10.0"
    root = Path(os.environ.get(_QEMU10_ENV, default)).resolve()
    executable = root / "usr" / "bin" / _EXECUTABLE
    if not executable.is_file():
        raise QemuNotFound(f"QEMU 10.0 not found at {executable} (set {_QEMU10_ENV} or install it)")
    share = root / "usr" / "share"
    return QemuLocation(
        executable,
        {"QEMU_MODULE_DIR": str(root / "usr" / "lib" / "x86_64-linux-gnu" / "qemu")},
        (share / "qemu", share / "seabios"),
    )


_LOCATORS = {"7.2": _system_qemu, "10.0": _unpacked_qemu10}


def _reported_version(location: QemuLocation) -> str:
    """Return the ``major.minor`` QEMU prints for ``--version`` (e.g. ``"7.2"``)."""
    env = {**os.environ, **location.env}
    try:
        out = subprocess.run(
            [str(location.executable), "--version"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise QemuNotFound(f"{location.executable} --version failed: {exc}") from exc
    # "QEMU emulator version 7.2.22 (Debian ...)"
    words = out.split()
    full = words[words.index("version") + 1] if "version" in words else ""
    return ".".join(full.split(".")[:2])


@functools.cache
def locate(version: str) -> QemuLocation:
    """Locate QEMU ``version`` and check the binary really is that version.

    Raises:
        QemuNotFound: the version is unknown, missing, or the binary reports another one.
    """
    if version not in _LOCATORS:
        raise QemuNotFound(f"unsupported QEMU version {version!r}; expected one of {QEMU_VERSIONS}")
    location = _LOCATORS[version]()
    reported = _reported_version(location)
    if reported != version:
        raise QemuNotFound(f"{location.executable} is QEMU {reported or '?'}, not {version}")
    return location


def available(version: str) -> bool:
    """Return whether QEMU ``version`` is installed and runnable."""
    try:
        locate(version)
    except QemuNotFound:
        return False
    return True
