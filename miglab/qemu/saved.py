"""Saved state made and judged by a real QEMU: mapped-ram files and ``savevm`` snapshots.

The container layer (:mod:`miglab.containers`) is tested on files these make,
and judged by the same QEMU loading what miglab wrote:

* :func:`make_mapped_ram` / :func:`judge_mapped_ram`: ``migrate file:PATH``
  with the ``mapped-ram`` capability, and a destination started with
  ``-incoming defer`` that sets it and runs ``migrate-incoming file:PATH``;
* :func:`make_snapshot` / :func:`judge_loadvm`: ``savevm NAME`` (HMP through
  QMP) into a qcow2 disk made by ``qemu-img create``, and a QEMU started with
  ``-loadvm NAME`` that must come up with the snapshot loaded;
* :func:`qemu_img_check`: ``qemu-img check`` on an image;
* :func:`judge_resumed_console`: issue #8's survival verdict on the console a
  restored guest wrote (a ``virsh restore`` of a save image of the test guest):
  the heartbeat continues from the saved console's last beat, no reboot, the
  disk reads right.

Every QEMU runs in its own process group and is killed on any outcome.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from qemu.qmp import ExecuteError

from miglab.qemu._process import (
    QMP_LOST,
    Guest,
    GuestExited,
    QemuError,
    quit_qemu,
    run_bounded,
    wait_migration,
)
from miglab.qemu.heartbeat import parse_console
from miglab.qemu.runner import JudgeResult, QemuBinary
from miglab.qemu.survival import BEATS, _Expect, _verdict

__all__ = (
    "judge_loadvm",
    "judge_mapped_ram",
    "judge_resumed_console",
    "make_mapped_ram",
    "make_snapshot",
    "qemu_img_check",
)

_BASE = ("-nodefaults", "-display", "none")


def _argv(qemu: QemuBinary, machine: str, memory: str, *extra: str) -> list[str]:
    return qemu.command("-machine", machine, "-m", memory, *_BASE, *extra)


def _caps(names: tuple[str, ...]) -> dict[str, object]:
    return {"capabilities": [{"capability": n, "state": True} for n in names]}


def make_mapped_ram(
    qemu: QemuBinary,
    out: Path,
    *,
    machine: str,
    memory: str = "32M",
    run_seconds: float = 1.0,
    extra_args: Sequence[str] = (),
    offset: int = 0,
    timeout: float = 90,
) -> Path:
    """Run a guest's firmware ``run_seconds``, stop it, and migrate it to ``out`` with mapped-ram.

    With ``offset`` the stream starts there (``file:PATH,offset=N``), as
    libvirt's ``sparse`` format has QEMU write it after libvirt's header.
    """
    out = Path(out).resolve()
    out.unlink(missing_ok=True)
    with Guest(_argv(qemu, machine, memory, *extra_args), qemu.env) as guest:

        async def save() -> None:
            qmp = await guest.connect()
            try:
                await asyncio.sleep(run_seconds)
                await qmp.execute("stop")
                try:
                    await qmp.execute("migrate-set-capabilities", _caps(("mapped-ram",)))
                except ExecuteError as exc:  # QEMU < 9.0: no such capability
                    raise QemuError(f"QEMU {qemu.version} refuses mapped-ram: {exc}") from None
                uri = f"file:{out},offset={offset}" if offset else f"file:{out}"
                await qmp.execute("migrate", {"uri": uri})
                status, error = await wait_migration(qmp)
                if status != "completed":
                    raise QemuError(f"mapped-ram migration {status}: {error}")
            finally:
                await quit_qemu(qmp)

        run_bounded(save(), timeout, f"QEMU {qemu.version} make_mapped_ram")
    return out


def judge_mapped_ram(
    qemu: QemuBinary,
    path: Path,
    *,
    machine: str,
    memory: str = "32M",
    offset: int = 0,
    timeout: float = 90,
) -> JudgeResult:
    """Load a mapped-ram file into a paused destination (``-incoming defer``).

    ``offset`` is where the stream starts in the file (``file:PATH,offset=N``),
    as in a libvirt ``sparse`` save image.
    """
    path = Path(path).resolve()
    argv = _argv(qemu, machine, memory, "-S", "-incoming", "defer")
    with Guest(argv, qemu.env) as guest:

        async def load() -> str:
            try:
                qmp = await guest.connect()
            except GuestExited:
                return "exited"
            try:
                await qmp.execute("migrate-set-capabilities", _caps(("mapped-ram",)))
                uri = f"file:{path},offset={offset}" if offset else f"file:{path}"
                await qmp.execute("migrate-incoming", {"uri": uri})
                status, _ = await wait_migration(qmp)
            except QMP_LOST:
                return "exited"
            await quit_qemu(qmp)
            return status

        try:
            status = run_bounded(load(), timeout, f"QEMU {qemu.version} judge_mapped_ram")
        except TimeoutError:
            status = "timeout"
        guest.wait(5)
        return JudgeResult(status == "completed", status, guest.stderr())


def _qemu_img() -> str:
    found = shutil.which("qemu-img")
    if found is None:
        raise QemuError("qemu-img is not installed (apt-get install qemu-utils; scripts/setup.sh)")
    return found


def make_snapshot(
    qemu: QemuBinary,
    disk: Path,
    name: str,
    *,
    machine: str,
    memory: str = "32M",
    run_seconds: float = 1.0,
    disk_size: str = "64M",
    timeout: float = 120,
) -> Path:
    """Create ``disk`` (qcow2) if absent, run a guest on it and ``savevm name``."""
    disk = Path(disk).resolve()
    if not disk.exists():
        subprocess.run(
            [_qemu_img(), "create", "-q", "-f", "qcow2", str(disk), disk_size], check=True
        )
    drive = f"file={disk},format=qcow2,if=none,id=d0"
    with Guest(_argv(qemu, machine, memory, "-drive", drive), qemu.env) as guest:

        async def save() -> None:
            qmp = await guest.connect()
            try:
                await asyncio.sleep(run_seconds)
                await qmp.execute("stop")
                reply = await qmp.execute(
                    "human-monitor-command", {"command-line": f"savevm {name}"}
                )
                if reply:
                    raise QemuError(f"savevm {name}: {reply}")
            finally:
                await quit_qemu(qmp)

        run_bounded(save(), timeout, f"QEMU {qemu.version} savevm")
        guest.wait(5)
    return disk


def judge_loadvm(
    qemu: QemuBinary,
    disk: Path,
    name: str,
    *,
    machine: str,
    memory: str = "32M",
    timeout: float = 90,
) -> JudgeResult:
    """Start QEMU with ``-loadvm name`` on ``disk``; accepted iff it comes up paused at the snapshot."""
    drive = f"file={Path(disk).resolve()},format=qcow2,if=none,id=d0"
    argv = _argv(qemu, machine, memory, "-drive", drive, "-S", "-loadvm", name)
    with Guest(argv, qemu.env) as guest:

        async def check() -> str:
            try:
                qmp = await guest.connect()
            except GuestExited:
                return "exited"
            try:
                status = await qmp.execute("query-status")
            except QMP_LOST:
                return "exited"
            await quit_qemu(qmp)
            assert isinstance(status, dict)
            return str(status.get("status"))

        try:
            status = run_bounded(check(), timeout, f"QEMU {qemu.version} -loadvm")
        except TimeoutError:
            status = "timeout"
        guest.wait(5)
        return JudgeResult(status in ("paused", "prelaunch"), status, guest.stderr())


def qemu_img_check(image: Path) -> subprocess.CompletedProcess[str]:
    """``qemu-img check`` (exit 0: no errors and no leaks)."""
    return subprocess.run(
        [_qemu_img(), "check", str(image)], capture_output=True, text=True, check=False, timeout=120
    )


def judge_resumed_console(
    saved: str, resumed: str, disk_md5: str, *, nics: int = 0
) -> tuple[bool, str]:
    """``(survived, why)``: did the guest whose console was ``saved`` run on in ``resumed``?

    The same judge as a live migration's (:mod:`miglab.qemu.survival`): the first
    resumed heartbeat counts on from the last saved one, each next is one more, at
    least ``BEATS`` of them, no ``MIGLAB-BOOT``, no kernel trouble, the disk's md5
    in every beat, ``nics`` networks seen.
    """
    before = parse_console(saved).last
    if before is None:
        return False, "no heartbeat before the save"
    expect = _Expect(before.counter, before.taint, disk_md5, nics, BEATS)
    survived, why = _verdict(parse_console(resumed), expect)
    return survived is True, why or f"fewer than {BEATS} heartbeats after the restore"
