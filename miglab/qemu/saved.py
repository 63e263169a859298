"""Saved state made and judged by a real QEMU: mapped-ram files and ``savevm`` snapshots.

The container layer (:mod:`miglab.containers`) is tested on files these make,
and judged by the same QEMU loading what miglab wrote:

* :func:`make_mapped_ram` / :func:`judge_mapped_ram`: ``migrate file:PATH``
  with the ``mapped-ram`` capability, and a destination started with
  ``-incoming defer`` that sets it and runs ``migrate-incoming file:PATH``;
* :func:`make_snapshot` / :func:`judge_loadvm`: ``savevm NAME`` (HMP through
  QMP) into a qcow2 disk made by ``qemu-img create``, and a QEMU started with
  ``-loadvm NAME`` that must come up with the snapshot loaded;
* :func:`make_postcopy`: a real postcopy migration (``postcopy-ram`` on both
  ends, ``migrate-start-postcopy`` at once) between two QEMUs over TCP, through a
  relay that forwards both directions (postcopy needs the return path) and records
  what the source sent;
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
from typing import Any

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
    "make_postcopy",
    "make_snapshot",
    "qemu_img",
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


def qemu_img() -> str:
    """Path of the installed ``qemu-img`` (raises QemuError naming the package when absent)."""
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
            [qemu_img(), "create", "-q", "-f", "qcow2", str(disk), disk_size], check=True
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
        [qemu_img(), "check", str(image)], capture_output=True, text=True, check=False, timeout=120
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


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Any) -> None:
    """Copy ``reader`` to ``writer`` until EOF, appending what passes to ``record`` (if any)."""
    try:
        while chunk := await reader.read(1 << 16):
            if record is not None:
                record.write(chunk)
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def make_postcopy(
    qemu: QemuBinary,
    out: Path,
    *,
    machine: str,
    memory: str = "64M",
    timeout: float = 120,
) -> Path:
    """Migrate a guest's firmware with postcopy to a second QEMU; ``out`` gets the source's bytes.

    The source switches to postcopy right after ``migrate``; precopy's bandwidth is capped
    at 64 KiB/s (a few seconds for even an idle guest's zero pages), so it cannot finish
    first, and postcopy's own bandwidth is not capped.  The stream holds
    POSTCOPY_ADVISE, precopy RAM, the PACKAGED device state, then the rest of RAM.
    """
    out = Path(out).resolve()
    caps = _caps(("postcopy-ram",))
    dest = Guest(_argv(qemu, machine, memory, "-incoming", "defer"), qemu.env)
    source = Guest(_argv(qemu, machine, memory), qemu.env)
    with dest, source, out.open("wb") as record:

        async def migrate() -> None:
            dq = await dest.connect()
            sq = await source.connect()
            try:
                await dq.execute("migrate-set-capabilities", caps)
                await dq.execute("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
                info = await dq.execute("query-migrate")
                assert isinstance(info, dict)
                port = int(info["socket-address"][0]["port"])

                async def relay(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                    dr, dw = await asyncio.open_connection("127.0.0.1", port)
                    await asyncio.gather(_pump(r, dw, record), _pump(dr, w, None))

                server = await asyncio.start_server(relay, "127.0.0.1", 0)
                relay_port = server.sockets[0].getsockname()[1]
                await sq.execute("migrate-set-capabilities", caps)
                await sq.execute("migrate-set-parameters", {"max-bandwidth": 64 << 10})
                await sq.execute("migrate", {"uri": f"tcp:127.0.0.1:{relay_port}"})
                await sq.execute("migrate-start-postcopy")
                status, error = await wait_migration(sq)
                if status != "completed":
                    raise QemuError(f"postcopy migration {status}: {error}")
                status, error = await wait_migration(dq)
                if status != "completed":
                    raise QemuError(f"postcopy destination {status}: {error}")
                server.close()
            finally:
                await quit_qemu(sq)
                await quit_qemu(dq)

        run_bounded(migrate(), timeout, f"QEMU {qemu.version} postcopy")
    return out
