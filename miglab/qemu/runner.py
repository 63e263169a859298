"""Drive a real QEMU: make migration streams, dump VMState schemas, judge streams.

QEMU is the ground truth for miglab: it makes the reference streams in ``data/`` and it is the
judge of any stream miglab writes (a destination QEMU either loads every byte or exits saying
why).  Every call here starts a fresh QEMU, talks QMP to it over a private unix socket, is
bounded by ``timeout`` seconds, and kills the process and removes its temp dir on any outcome.

Example:
    >>> qemu = find_qemu("7.2")
    >>> stream = qemu.make_stream(Path("a.mig"), machine="pc-i440fx-7.2")
    >>> qemu.judge(stream, machine="pc-i440fx-7.2").accepted
    True
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from qemu.qmp import ExecuteError

from miglab.qemu._locate import QemuLocation, locate
from miglab.qemu._process import (
    QMP_LOST,
    Guest,
    GuestExited,
    QemuError,
    QemuTimeout,
    drop,
    quit_qemu,
    run_bounded,
    wait_migration,
)

__all__ = ("JudgeResult", "QemuBinary", "find_qemu")

#: Options every run shares: no default devices (so the device set is exactly what the
#: caller names) and no display.
_BASE_ARGS = ("-nodefaults", "-display", "none")
#: Seconds a QEMU gets to exit after ``quit`` or after a failed incoming migration.
_EXIT_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """QEMU's verdict on a stream.

    Attributes:
        accepted: True iff the destination QEMU loaded the whole stream (``status == "completed"``).
        status: the destination's last ``query-migrate`` status; ``"exited"`` if QEMU exited
            before reporting an end state (what it does on a bad stream), ``"timeout"`` if it
            did not finish in time.
        stderr: everything the destination QEMU wrote to stderr (on rejection: the reason).
    """

    accepted: bool
    status: str
    stderr: str


@dataclass(frozen=True, slots=True)
class QemuBinary:
    """One runnable QEMU build (see :func:`find_qemu`).

    Attributes:
        version: one of ``QEMU_VERSIONS`` (``"5.2"``, ``"7.2"``, ``"10.0"``, ``"11.1"``).
        executable: path of ``qemu-system-x86_64`` (for a chroot build: inside ``root``).
        env: extra environment QEMU needs (merged over ``os.environ``).
        data_dirs: firmware dirs passed as ``-L``, in order.
        root: the chroot the build runs in (5.2, 11.1), or None (7.2, 10.0 run on the host).
        binds: host dirs a chroot build must see beyond those its arguments name.
    """

    version: str
    executable: Path
    env: Mapping[str, str]
    data_dirs: tuple[Path, ...]
    root: Path | None = None
    binds: tuple[Path, ...] = ()

    def command(self, *args: str) -> list[str]:
        """Return the full argv running this build with ordinary QEMU ``args``.

        For a host build: the executable, its ``-L`` dirs, then ``args``.  For a chroot
        build the same behind a private-mount-namespace wrapper that makes ``/tmp`` and the
        temp dir, the current dir, every path in ``args`` and ``binds`` visible at the same
        paths (:mod:`miglab.qemu._chroot`), so paths in ``args`` work unchanged: pass every
        argument here, not appended to the result.
        """
        location = QemuLocation(self.executable, self.env, self.data_dirs, self.root)
        return location.command(*args, binds=self.binds)

    def with_binds(self, *dirs: Path) -> QemuBinary:
        """Return this build with ``dirs`` also visible inside its chroot (no-op on the host).

        Needed only for paths QEMU learns other than from its command line (a file a
        QMP command names later, a path inside a config file).
        """
        extra = tuple(Path(d).resolve() for d in dirs)
        return dataclasses.replace(self, binds=(*self.binds, *extra))

    @staticmethod
    def _guest_args(
        machine: str, memory: str, devices: Sequence[str], extra_args: Sequence[str]
    ) -> list[str]:
        """QEMU arguments of a guest (to go through :meth:`command` whole: it scans paths)."""
        args = ["-machine", machine, "-m", memory, *_BASE_ARGS]
        for device in devices:
            args += ["-device", device]
        return [*args, *extra_args]

    def make_stream(
        self,
        out: Path,
        *,
        machine: str,
        devices: Sequence[str] = (),
        memory: str = "32M",
        run_seconds: float | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 60,
    ) -> Path:
        """Migrate a fresh guest to the file ``out`` and return ``out``.

        The guest stays paused from the start (``-S``), or, with ``run_seconds``, runs its
        firmware that long and is then stopped.  The file is written only when QEMU reports
        the migration ``completed``.

        Raises:
            QemuError: QEMU failed to start or the migration failed (message has QEMU's stderr).
            QemuTimeout: it took longer than ``timeout`` seconds.
        """
        out = Path(out).resolve()
        args = self._guest_args(machine, memory, devices, extra_args)
        if run_seconds is None:
            args.append("-S")
        with Guest(self.command(*args), self.env) as guest:
            scratch = guest.dir / "stream.mig"

            async def save() -> None:
                qmp = await guest.connect()
                try:
                    if run_seconds is not None:
                        await asyncio.sleep(run_seconds)
                        await qmp.execute("stop")
                    uri = f"exec:cat > {shlex.quote(str(scratch))}"
                    await qmp.execute("migrate", {"uri": uri})
                    status, error = await wait_migration(qmp)
                    if status != "completed":
                        raise QemuError(f"migration {status}: {error}")
                finally:
                    await quit_qemu(qmp)

            try:
                run_bounded(save(), timeout, f"QEMU {self.version} make_stream")
            except QemuError as exc:  # same class (QemuTimeout stays a TimeoutError), plus stderr
                stderr = guest.stderr().strip()
                raise type(exc)(f"{exc}; QEMU stderr: {stderr}" if stderr else str(exc)) from exc
            except ExecuteError as exc:  # e.g. "State blocked by non-migratable device ..."
                raise QemuError(f"QEMU {self.version} refused: {exc}") from exc
            except QMP_LOST as exc:
                raise QemuError(f"QEMU {self.version} went away: {guest.stderr()}") from exc
            guest.wait(_EXIT_GRACE)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(scratch, out)
        return out

    def dump_vmstate(self, out: Path, *, machine: str, timeout: float = 60) -> Path:
        """Write QEMU's ``-dump-vmstate`` JSON schema for ``machine`` to ``out``; return ``out``.

        Raises:
            QemuError: QEMU failed (message has its stderr).
            QemuTimeout: it took longer than ``timeout`` seconds.
        """
        out = Path(out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = self.command("-machine", machine, *_BASE_ARGS, "-dump-vmstate", str(out))
        with Guest(argv, self.env) as guest:
            status = guest.wait(timeout)
            if status is None:
                raise QemuTimeout(f"QEMU {self.version} -dump-vmstate took over {timeout:g} s")
            if status != 0:
                raise QemuError(f"QEMU {self.version} -dump-vmstate failed: {guest.stderr()}")
        return out

    def machines(self, *, timeout: float = 60) -> dict[str, str]:
        """Return QEMU's ``-machine help``: machine type -> its description, as QEMU prints it.

        The description keeps QEMU's own notes, e.g. ``"... (alias of pc-q35-5.2)"``,
        ``"... (default)"``, ``"... (deprecated)"``.

        Raises:
            QemuError: QEMU failed (message has its stderr).
            QemuTimeout: it took longer than ``timeout`` seconds.
        """
        argv = self.command("-machine", "help")
        try:
            run = subprocess.run(
                argv,
                env={**os.environ, **self.env},
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise QemuTimeout(f"QEMU {self.version} -machine help took over {timeout:g} s") from exc
        if run.returncode != 0:
            raise QemuError(f"QEMU {self.version} -machine help failed: {run.stderr.strip()}")
        lines = run.stdout.splitlines()
        if not lines or not lines[0].startswith("Supported machines"):
            raise QemuError(f"QEMU {self.version} -machine help printed {run.stdout[:80]!r}")
        rows = (line.split(None, 1) for line in lines[1:] if line.strip())
        return {row[0]: row[1] if len(row) > 1 else "" for row in rows}

    def judge(
        self,
        stream: Path,
        *,
        machine: str,
        devices: Sequence[str] = (),
        memory: str = "32M",
        extra_args: Sequence[str] = (),
        timeout: float = 60,
    ) -> JudgeResult:
        """Load ``stream`` into a paused destination QEMU and report whether it accepted it.

        The destination must be configured like the source (machine, memory, devices);
        otherwise QEMU rejects even a good stream.  A hang is a verdict too
        (``status == "timeout"``), so this never raises for a bad stream.

        Raises:
            QemuError: QEMU could not be started at all.
        """
        stream = Path(stream).resolve()
        if not stream.is_file():
            raise QemuError(f"no stream file at {stream}")
        args = self._guest_args(machine, memory, devices, extra_args)
        args += ["-S", "-incoming", f"exec:cat {shlex.quote(str(stream))}"]
        deadline = time.monotonic() + timeout
        with Guest(self.command(*args), self.env) as guest:

            async def load() -> str:
                try:
                    qmp = await guest.connect()
                except GuestExited:
                    return "exited"
                try:
                    status, _ = await wait_migration(qmp)
                except QMP_LOST:
                    status = "exited"
                await (quit_qemu(qmp) if status == "completed" else drop(qmp))
                return status

            try:
                status = run_bounded(load(), timeout, f"QEMU {self.version} judge")
            except TimeoutError:
                status = "timeout"
            if status != "timeout":  # let QEMU finish writing its reason and exit
                guest.wait(min(_EXIT_GRACE, deadline - time.monotonic()))
            return JudgeResult(status == "completed", status, guest.stderr())


def find_qemu(version: str) -> QemuBinary:
    """Return the installed QEMU ``version`` (one of ``QEMU_VERSIONS``).

    Raises:
        QemuNotFound: it is not installed (run ``scripts/install-qemu.sh``).
    """
    location = locate(version)
    return QemuBinary(version, location.executable, location.env, location.data_dirs, location.root)
