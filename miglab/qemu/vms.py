"""Two long-lived QEMUs of the test guest for a live migration: a running source, a waiting destination.

:func:`capture` and :func:`survives` each own one QEMU for one call.  A live migration needs
two at once, alive across a call that is not theirs (``miglab migrate`` talks to them only
through their QMP sockets): :func:`running_vm` boots the guest and returns when it beats with
its disk and every network answering; :func:`waiting_vm` starts a destination with ``-S
-incoming defer``.  Each :class:`VM` is a context manager that kills its QEMU (and removes its
console and QMP socket) on exit, whatever happened.

    >>> with running_vm("7.2", "pc-q35-7.2", "live") as src, waiting_vm(
    ...         "7.2", "pc-q35-7.2", "live") as dst:
    ...     report = migrate(src.qmp, dst.qmp)
    ...     dst.survival(src.console().last)
    (True, 'heartbeat continued ...')
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from miglab.qemu._process import Guest, GuestExited, QemuTimeout
from miglab.qemu.capturing import CONSOLE_POLL
from miglab.qemu.guest import DeviceSet, GuestSpec, default_guest, device_set, vm_args
from miglab.qemu.heartbeat import Console, Heartbeat, parse_console
from miglab.qemu.runner import find_qemu
from miglab.qemu.survival import WINDOW, judge_console

__all__ = ("VM", "running_vm", "waiting_vm")

#: Seconds a source gets to boot to its first full heartbeat (TCG on a loaded machine).
BOOT_TIMEOUT = 120.0


class VM:
    """One QEMU of the test guest with a QMP socket, killed on :meth:`close`.

    Attributes:
        qemu: the build's version (``"7.2"``).
        machine: the machine type.
        devices: the device set.
        guest: the guest it runs.
        qmp: its QMP address for ``miglab migrate`` (``unix:PATH``).
    """

    def __init__(
        self,
        qemu: str,
        machine: str,
        devices: str | DeviceSet,
        *,
        guest: GuestSpec | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.qemu, self.machine = qemu, machine
        self.devices = device_set(devices)
        self.guest = guest or default_guest()
        binary = find_qemu(qemu)
        self._tmp = tempfile.TemporaryDirectory(prefix="miglab-vm-")
        self.console_path = Path(self._tmp.name) / "console.log"
        argv = binary.command(
            *vm_args(self.guest, self.devices, machine=machine, console=self.console_path),
            *extra_args,
        )
        try:
            self.process = Guest(argv, binary.env)
        except BaseException:
            self._tmp.cleanup()
            raise
        self.qmp = f"unix:{self.process.qmp_socket}"

    def console(self) -> Console:
        """What the guest's serial console shows so far."""
        return parse_console(self.console_text())

    def console_text(self) -> str:
        """The raw console log so far."""
        path = self.console_path
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr(self) -> str:
        """What QEMU wrote to stderr so far."""
        return self.process.stderr()

    @property
    def alive(self) -> bool:
        """True while the QEMU process runs."""
        return self.process.process.poll() is None

    def wait_qmp(self, timeout: float) -> None:
        """Wait until QEMU's QMP socket exists (QEMU creates it early in its start-up).

        Raises:
            GuestExited: QEMU exited first (with its stderr).
            QemuTimeout: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.process.qmp_socket.exists():
            if not self.alive:
                raise GuestExited(f"QEMU {self.qemu} exited: {self.stderr().strip()}")
            if time.monotonic() > deadline:
                raise QemuTimeout(f"QEMU {self.qemu} opened no QMP socket in {timeout:g} s")
            time.sleep(CONSOLE_POLL / 4)

    def wait_ready(self, beats: int = 3, timeout: float = BOOT_TIMEOUT) -> Heartbeat:
        """Wait for ``beats`` heartbeats, the last with every network answering.

        Raises:
            GuestExited: QEMU exited first (with its stderr).
            QemuTimeout: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            last = self.console().last
            nets = last is not None and len(last.nets) == self.devices.nics and last.net_ok
            if last is not None and nets and last.counter >= beats:
                return last
            if not self.alive:
                raise GuestExited(f"QEMU {self.qemu} exited while booting: {self.stderr()}")
            if time.monotonic() > deadline:
                raise QemuTimeout(f"the guest on QEMU {self.qemu} did not beat in {timeout:g} s")
            time.sleep(CONSOLE_POLL)

    def survival(self, before: Heartbeat | None, window: float = WINDOW) -> tuple[bool, str]:
        """Whether the guest runs on here, continuing from the source's heartbeat ``before``.

        The rules of :func:`~miglab.qemu.survival.survives`: the counter continues, no
        reboot or kernel trouble, the disk reads right, every network answers.
        """
        deadline = time.monotonic() + window
        while True:
            verdict, why = judge_console(
                self.console_text(),
                counter=before.counter if before else None,
                taint=before.taint if before else 0,
                disk_md5=self.guest.disk_md5,
                nics=self.devices.nics,
            )
            if verdict is not None:
                return verdict, why
            if not self.alive:
                return False, f"QEMU {self.qemu} exited: {self.stderr().strip()}"
            if time.monotonic() > deadline:
                seen = self.console().last
                what = f"stopped after beat {seen.counter}" if seen else "printed no heartbeat"
                return False, f"the guest {what} within {window:g} s"
            time.sleep(CONSOLE_POLL)

    def kill(self) -> None:
        """Kill QEMU now (SIGKILL to its process group), as a crash would; files stay until close."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.process.pid, signal.SIGKILL)
        self.process.process.wait()

    def close(self) -> None:
        """Kill QEMU and remove its files."""
        try:
            self.process.close()
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> VM:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def running_vm(
    qemu: str,
    machine: str,
    devices: str | DeviceSet = "live",
    *,
    guest: GuestSpec | None = None,
    extra_args: Sequence[str] = (),
    beats: int = 3,
    timeout: float = BOOT_TIMEOUT,
) -> VM:
    """Boot the guest on QEMU ``qemu`` and return once it beats with every network answering.

    Raises:
        GuestExited, QemuTimeout: it did not come up (the VM is closed).
        GuestNotFound: the guest is not built.
    """
    vm = VM(qemu, machine, devices, guest=guest, extra_args=extra_args)
    try:
        vm.wait_ready(beats, timeout)
    except BaseException:
        vm.close()
        raise
    return vm


def waiting_vm(
    qemu: str,
    machine: str,
    devices: str | DeviceSet = "live",
    *,
    guest: GuestSpec | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> VM:
    """Start a destination for the guest on QEMU ``qemu`` (paused, ``-incoming defer``).

    Returns once its QMP socket is up.

    Raises:
        GuestExited: QEMU exited first (bad options; the message has its stderr).
        QemuTimeout: the socket did not come up within ``timeout`` seconds.
    """
    vm = VM(
        qemu, machine, devices, guest=guest, extra_args=[*extra_args, "-S", "-incoming", "defer"]
    )
    try:
        vm.wait_qmp(timeout)
    except BaseException:
        vm.close()
        raise
    return vm
