"""The running test guest snapshotted with ``savevm`` into its qcow2 disk, and resumed with ``-loadvm``.

Issue #12 §3's qcow2 rescue: a user's VM was snapshotted under one QEMU release and must
resume under another.  Here the guest of issue #8 runs with ``/dev/vda`` on a qcow2 overlay
of its raw disk (:func:`guest_overlay`: same bytes, so every heartbeat's disk md5 is the
raw image's), and

* :func:`savevm_running_guest` boots it, waits until it beats with its disk and every
  network answering, stops it, runs ``savevm NAME`` (HMP through QMP) and quits; the
  console up to the stop is what the resumed guest must continue;
* :func:`loadvm_running_guest` starts the same guest with ``-loadvm NAME`` (it runs at
  once) and judges its console by issue #8's rules (:func:`miglab.qemu.survival.judge_console`):
  the heartbeat counts on from the saved console's last beat, no ``MIGLAB-BOOT``, no
  kernel trouble, the disk reads right, every network answers.

Every QEMU runs in its own process group and is killed on any outcome.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from miglab.qemu._process import QMP_LOST, Guest, GuestExited, QemuError, quit_qemu, run_bounded
from miglab.qemu.capturing import CONSOLE_POLL
from miglab.qemu.guest import DeviceSet, GuestSpec, default_guest, vm_args
from miglab.qemu.heartbeat import parse_console
from miglab.qemu.runner import QemuBinary
from miglab.qemu.saved import qemu_img
from miglab.qemu.survival import BEATS, WINDOW, judge_console

__all__ = ("guest_overlay", "loadvm_running_guest", "savevm_running_guest")

#: Seconds the source guest gets to boot and beat with every network answering.
BOOT_WINDOW = 90.0


def guest_overlay(path: Path, guest: GuestSpec | None = None) -> Path:
    """Create ``path``: a qcow2 whose backing file is the guest's raw disk (same size, same bytes)."""
    spec = guest or default_guest()
    path = Path(path).resolve()
    subprocess.run(
        [qemu_img(), "create", "-q", "-f", "qcow2", "-b", str(spec.disk), "-F", "raw", str(path)],
        check=True,
        timeout=60,
    )
    return path


def _console(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def savevm_running_guest(
    qemu: QemuBinary,
    image: Path,
    name: str,
    *,
    machine: str,
    devices: DeviceSet,
    console: Path,
    guest: GuestSpec | None = None,
    timeout: float = 240,
) -> str:
    """Boot the guest on ``image``, let it beat, ``stop`` + ``savevm name``; return its console.

    Raises:
        QemuError: QEMU exited, the guest did not beat with every network within
            :data:`BOOT_WINDOW` seconds, or ``savevm`` failed (QEMU's text in the message).
        QemuTimeout: the whole run took longer than ``timeout`` seconds.
    """
    spec = guest or default_guest()
    argv = qemu.command(
        *vm_args(spec, devices, machine=machine, console=console, qcow2=Path(image).resolve())
    )
    with Guest(argv, qemu.env) as process:

        async def save() -> None:
            qmp = await process.connect()
            try:
                deadline = time.monotonic() + BOOT_WINDOW
                while True:
                    beats = parse_console(_console(console)).beats
                    last = beats[-1] if beats else None
                    if (
                        last is not None
                        and len(beats) >= BEATS
                        and len(last.nets) == devices.nics
                        and last.net_ok
                    ):
                        break
                    if time.monotonic() > deadline:
                        raise QemuError(
                            f"QEMU {qemu.version}: the guest did not beat with every network "
                            f"within {BOOT_WINDOW:g} s (last beat: {last})"
                        )
                    await asyncio.sleep(CONSOLE_POLL)
                await qmp.execute("stop")
                reply = await qmp.execute(
                    "human-monitor-command", {"command-line": f"savevm {name}"}
                )
                if reply:
                    raise QemuError(f"QEMU {qemu.version} savevm {name}: {reply}")
            except QMP_LOST:
                process.wait(5)
                raise QemuError(f"QEMU {qemu.version} exited: {process.stderr().strip()}") from None
            finally:
                await quit_qemu(qmp)

        try:
            run_bounded(save(), timeout, f"QEMU {qemu.version} savevm of the running guest")
        except GuestExited:
            raise QemuError(f"QEMU {qemu.version} did not start: {process.stderr()}") from None
        process.wait(5)
    return _console(console)


def loadvm_running_guest(
    qemu: QemuBinary,
    image: Path,
    name: str,
    *,
    machine: str,
    devices: DeviceSet,
    console: Path,
    saved_console: str,
    guest: GuestSpec | None = None,
    extra_args: Sequence[str] = (),
    window: float = WINDOW,
    timeout: float = 180,
) -> tuple[bool, str]:
    """Start the guest on ``image`` with ``-loadvm name``; ``(survived, why)`` by issue #8's judge.

    ``saved_console`` is the console :func:`savevm_running_guest` returned: the heartbeat must
    count on from its last beat.  ``extra_args`` are more destination options (the
    ``-global`` properties :func:`miglab.compat.convert_stream` reports).  When QEMU refuses
    the snapshot, ``why`` carries its stderr.
    """
    spec = guest or default_guest()
    before = parse_console(saved_console).last
    if before is None:
        return False, "no heartbeat before the savevm"
    argv = qemu.command(
        *vm_args(spec, devices, machine=machine, console=console, qcow2=Path(image).resolve()),
        *extra_args,
        "-loadvm",
        name,
    )
    with Guest(argv, qemu.env) as process:

        async def judge() -> tuple[bool, str]:
            try:
                qmp = await process.connect()
            except GuestExited:
                return False, f"QEMU exited: {process.stderr().strip()}"
            try:
                deadline = time.monotonic() + window
                while True:
                    verdict, why = judge_console(
                        _console(console),
                        counter=before.counter,
                        taint=before.taint,
                        disk_md5=spec.disk_md5,
                        nics=devices.nics,
                    )
                    if verdict is not None:
                        return verdict, why
                    if process.process.poll() is not None:
                        return False, f"QEMU exited: {process.stderr().strip()}"
                    if time.monotonic() > deadline:
                        last = parse_console(_console(console)).last
                        return False, f"no survival within {window:g} s (last beat: {last})"
                    await asyncio.sleep(CONSOLE_POLL)
            except QMP_LOST:
                process.wait(5)
                return False, f"QEMU exited: {process.stderr().strip()}"
            finally:
                await quit_qemu(qmp)

        return run_bounded(judge(), timeout, f"QEMU {qemu.version} -loadvm {name}")
