"""Find the QEMU builds miglab drives, and describe how to run them.

Four builds, side by side (installed by ``scripts/install-qemu.sh``, see QEMU-FORMAT.md 9):

* ``"7.2"``: Debian 12's system QEMU on ``PATH``;
* ``"10.0"``: bookworm-backports, unpacked (not installed) under the project's ``.qemu/10.0``;
  it needs its own firmware dirs (``-L``) and module dir, or it loads 7.2's modules and aborts;
* ``"5.2"`` and ``"11.1"``: Debian 11's package and trixie-backports' in Debian 11 / 13 chroots,
  ``.qemu/5.2/root`` and ``.qemu/11.1/root``, run through :mod:`miglab.qemu._chroot`; inside
  their chroot they find their own firmware and modules, so they need no ``-L``.

``MIGLAB_QEMU_DIR`` overrides where the project's ``.qemu`` folder is.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from miglab.errors import MiglabError
from miglab.qemu._chroot import chroot_command

__all__ = ("QEMU_VERSIONS", "QemuLocation", "QemuNotFound", "available", "locate")

QEMU_VERSIONS = ("5.2", "7.2", "10.0", "11.1")

#: Binary name of the x86 system emulator (the only target miglab uses).
_EXECUTABLE = "qemu-system-x86_64"
#: Environment variable overriding the folder that holds the non-system builds.
_QEMU_DIR_ENV = "MIGLAB_QEMU_DIR"


class QemuNotFound(MiglabError, FileNotFoundError):
    """The requested QEMU version is not installed (run ``scripts/install-qemu.sh``)."""


@dataclass(frozen=True, slots=True)
class QemuLocation:
    """Where one QEMU build lives.

    Attributes:
        executable: the binary; for a chroot build its path inside ``root``.
        env: extra environment it needs.
        data_dirs: firmware dirs to pass as ``-L``.
        root: the chroot it runs in, or None for a build that runs on the host.
    """

    executable: Path
    env: Mapping[str, str]
    data_dirs: tuple[Path, ...]
    root: Path | None = None

    def command(self, *args: str, binds: tuple[Path, ...] = ()) -> list[str]:
        """Return the argv running this build with ``args`` (``binds``: see ``_chroot``)."""
        argv = [str(self.executable)]
        for data_dir in self.data_dirs:
            argv += ["-L", str(data_dir)]
        argv += args
        return argv if self.root is None else chroot_command(self.root, argv, binds)


def _qemu_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / ".qemu"
    return Path(os.environ.get(_QEMU_DIR_ENV, default)).resolve()


def _system_qemu() -> QemuLocation:
    found = shutil.which(_EXECUTABLE)
    if found is None:
        raise QemuNotFound(f"{_EXECUTABLE} not found on PATH (QEMU 7.2 is the system QEMU)")
    return QemuLocation(Path(found), {}, ())


def _unpacked_qemu10() -> QemuLocation:
    root = _qemu_dir() / "10.0"
    executable = root / "usr" / "bin" / _EXECUTABLE
    if not executable.is_file():
        raise QemuNotFound(
            f"QEMU 10.0 not found at {executable} (set {_QEMU_DIR_ENV} or install it)"
        )
    share = root / "usr" / "share"
    return QemuLocation(
        executable,
        {"QEMU_MODULE_DIR": str(root / "usr" / "lib" / "x86_64-linux-gnu" / "qemu")},
        (share / "qemu", share / "seabios"),
    )


def _chroot_qemu(version: str) -> QemuLocation:
    root = _qemu_dir() / version / "root"
    executable = Path("/usr/bin") / _EXECUTABLE
    if not (root / executable.relative_to("/")).is_file():
        raise QemuNotFound(
            f"QEMU {version} not found in the chroot {root} (set {_QEMU_DIR_ENV} or install it)"
        )
    return QemuLocation(executable, {}, (), root)


_LOCATORS: dict[str, Callable[[], QemuLocation]] = {
    "5.2": functools.partial(_chroot_qemu, "5.2"),
    "7.2": _system_qemu,
    "10.0": _unpacked_qemu10,
    "11.1": functools.partial(_chroot_qemu, "11.1"),
}


def _reported_version(location: QemuLocation) -> str:
    """Return the ``major.minor`` QEMU prints for ``--version`` (e.g. ``"7.2"``)."""
    env = {**os.environ, **location.env}
    try:
        run = subprocess.run(
            location.command("--version"), env=env, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise QemuNotFound(f"{location.executable} --version failed: {exc}") from exc
    if run.returncode != 0:
        raise QemuNotFound(
            f"{location.executable} --version exited {run.returncode}: {run.stderr.strip()}"
        )
    out = run.stdout
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
    if version not in QEMU_VERSIONS:
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
