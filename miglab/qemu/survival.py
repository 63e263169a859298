"""The survival judge: does the guest keep running after QEMU loads the stream?

QEMU completing an incoming migration only says it parsed every byte.  :func:`survives` asks
the guest: it starts a destination QEMU with the same guest and devices (``-S -incoming
defer``), loads the stream with ``migrate-incoming exec:cat FILE``, resumes it (``cont``) and
watches the serial console.  The guest **survived** only if, within ``window`` seconds,

* the heartbeat continues from the source's last counter (the first new counter is >= it,
  each next one is one more): no counter restart, no ``MIGLAB-BOOT`` line (no reboot);
* no oops, BUG, panic or lockup is printed, the taint mask did not change, and QEMU did not
  report ``guest-panicked`` (pvpanic);
* every heartbeat reads the disk with the right checksum;
* the newest heartbeat has every network answering its gateway.

Otherwise :class:`Survival` says why: QEMU's own error text when it refused the stream, or what
the guest did (went silent, rebooted, oopsed, lost its disk or network).  Every run is bounded
by ``timeout`` and kills its QEMU.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qemu.qmp import ExecuteError

from miglab.qemu._process import (
    QMP_LOST,
    Guest,
    GuestExited,
    QemuTimeout,
    quit_qemu,
    run_bounded,
)
from miglab.qemu.capturing import CONSOLE_POLL, Capture, Progress, sidecar_path, wait_reporting
from miglab.qemu.guest import DeviceSet, GuestSpec, default_guest, device_set, vm_args
from miglab.qemu.heartbeat import Console, parse_console
from miglab.qemu.runner import find_qemu

__all__ = ("Survival", "judge_console", "survives")

#: Heartbeats the destination must print after ``cont`` to count as running.
BEATS = 3
#: Seconds after ``cont`` within which those heartbeats must come.
WINDOW = 30.0
#: Seconds a QEMU gets to write its reason and exit after refusing a stream.
EXIT_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Survival:
    """The verdict on one migrated stream.

    Attributes:
        survived: True iff the guest kept running correctly on the destination.
        reason: one line saying why (or what was seen, when it survived).
        qemu_error: QEMU's own error text (``error-desc`` and stderr) when it refused the
            stream or failed; empty otherwise.
        status: the destination's last migration status (``"completed"``, ``"failed"``,
            ``"exited"`` when QEMU exited on a bad stream, ``"timeout"``).
        counter_before: the source's last heartbeat counter (None when unknown).
        counter_after: the destination's newest heartbeat counter (None when it printed none).
        disk_ok: every destination heartbeat had the right disk checksum (None: no heartbeat).
        net_ok: the newest heartbeat had every network answering (None: no heartbeat).
        elapsed: seconds from starting the destination to the verdict.
        console: the destination's console log (for a reader who wants to see).
    """

    survived: bool
    reason: str
    qemu_error: str
    status: str
    counter_before: int | None
    counter_after: int | None
    disk_ok: bool | None
    net_ok: bool | None
    elapsed: float
    console: str = ""


@dataclass(frozen=True, slots=True)
class _Expect:
    counter: int | None
    taint: int
    disk_md5: str
    nics: int
    beats: int


def _verdict(console: Console, expect: _Expect) -> tuple[bool | None, str]:
    """``(True, why)`` once survived, ``(False, why)`` once it cannot, ``(None, "")`` to wait."""
    if console.boots:
        return False, "the guest rebooted (MIGLAB-BOOT after cont)"
    if console.trouble:
        return False, f"the guest kernel reports trouble: {console.trouble[0]}"
    beats = console.beats
    if not beats:
        return None, ""
    first = beats[0].counter
    if expect.counter is not None and first < expect.counter:
        return False, f"heartbeat went back: source last counted {expect.counter}, then {first}"
    for before, after in itertools.pairwise(beats):
        if after.counter != before.counter + 1:
            return False, f"heartbeat jumped from {before.counter} to {after.counter}"
    for beat in beats:
        if beat.disk != expect.disk_md5:
            return (
                False,
                f"disk read at beat {beat.counter} gave md5 {beat.disk}, not {expect.disk_md5}",
            )
        if beat.taint != expect.taint:
            return (
                False,
                f"kernel taint changed from {expect.taint} to {beat.taint} at beat {beat.counter}",
            )
    if len(beats) < expect.beats:
        return None, ""
    last = beats[-1]
    if len(last.nets) != expect.nics:
        return False, f"the guest sees {len(last.nets)} networks, not {expect.nics}"
    if not last.net_ok:
        down = ", ".join(name for name, ok in last.nets.items() if not ok)
        # A ping in flight across the switch-over may be lost; only a steady failure counts.
        if len(beats) >= 2 * expect.beats:
            return False, f"network {down} does not answer (beat {last.counter})"
        return None, ""
    return True, (
        f"heartbeat continued {expect.counter} -> {first}..{last.counter}, disk ok, "
        f"{len(last.nets)}/{expect.nics} networks answer"
    )


def judge_console(
    text: str, *, counter: int | None, taint: int, disk_md5: str, nics: int, beats: int = BEATS
) -> tuple[bool | None, str]:
    """Judge a destination's console log by the same rules as :func:`survives`.

    For a destination miglab does not start itself (a live migration): ``counter`` and
    ``taint`` are the source's last heartbeat's, ``disk_md5`` the guest disk's, ``nics`` the
    networks it must see.  Returns ``(True, why)`` once survived, ``(False, why)`` once it
    cannot, ``(None, "")`` while it is too early to tell.
    """
    return _verdict(parse_console(text), _Expect(counter, taint, disk_md5, nics, beats))


def survives(
    stream_or_capture: str | os.PathLike[str] | Capture,
    *,
    qemu: str | None = None,
    machine: str | None = None,
    devices: str | DeviceSet | None = None,
    guest: GuestSpec | None = None,
    like: Capture | None = None,
    extra_args: Sequence[str] = (),
    window: float = WINDOW,
    timeout: float = 120,
    progress: Progress | None = None,
) -> Survival:
    """Load a stream into a destination QEMU, resume it, and judge whether the guest survived.

    Args:
        stream_or_capture: a stream file, or the :class:`Capture` of one.  A stream with a
            sidecar (``<stream>.json``) takes its defaults from it.
        qemu: destination QEMU version (default: the capture's).
        machine: destination machine type (default: the capture's).
        devices: device set or its name (default: the capture's).
        guest: the guest (default: the capture's, else the built one).
        like: the capture a derived stream (e.g. miglab's conversion of it) came from; gives
            the counter to continue from and the defaults when the stream has no sidecar.
        extra_args: more destination options, e.g. the ``-global`` properties
            :func:`miglab.compat.convert_stream` reports (``ChangeReport.options``).
        window: seconds after ``cont`` for the guest to show it runs.
        timeout: seconds for the whole judgement.
        progress: told what the judge waits for on each poll (loading, the heartbeat).

    Raises:
        QemuError: the destination could not be started at all (bad options).
        ValueError: qemu, machine or devices is neither given nor known from a capture.
    """
    origin: Capture | None
    if isinstance(stream_or_capture, Capture):
        stream, origin = stream_or_capture.stream, stream_or_capture
    else:
        stream = Path(stream_or_capture).resolve()
        origin = like
        if origin is None and sidecar_path(stream).is_file():
            origin = Capture.load(stream)
    qemu = qemu or (origin.qemu if origin else None)
    machine = machine or (origin.machine if origin else None)
    devices = devices or (origin.devices if origin else None)
    if qemu is None or machine is None or devices is None:
        raise ValueError(
            "survives() needs qemu, machine and devices, or a capture to take them from"
        )
    spec = guest or (origin.guest if origin else default_guest())
    dset = device_set(devices)
    expect = _Expect(
        origin.last_counter if origin else None,
        origin.taint if origin else 0,
        spec.disk_md5,
        dset.nics,
        BEATS,
    )
    # The stream is named to QEMU over QMP, so a chroot build must be told to see its dir.
    binary = find_qemu(qemu).with_binds(stream.parent)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="miglab-survives-") as tmp:
        console_path = Path(tmp) / "console.log"
        argv = binary.command(
            *vm_args(spec, dset, machine=machine, console=console_path),
            *extra_args,
            "-S",
            "-incoming",
            "defer",
        )
        with Guest(argv, binary.env) as process:

            def result(survived: bool, reason: str, status: str, error: str = "") -> Survival:
                text = console_path.read_text(errors="replace") if console_path.exists() else ""
                console = parse_console(text)
                last = console.last
                return Survival(
                    survived,
                    reason,
                    error,
                    status,
                    expect.counter,
                    last.counter if last else None,
                    all(b.disk == expect.disk_md5 for b in console.beats) if last else None,
                    (last.net_ok and len(last.nets) == expect.nics) if last else None,
                    time.monotonic() - start,
                    text,
                )

            async def judge() -> Survival:
                if progress is not None:
                    progress(f"starting QEMU {qemu}")
                try:
                    qmp = await process.connect()
                except GuestExited:
                    return result(False, "QEMU did not start", "exited", process.stderr().strip())
                try:
                    uri = f"exec:cat {shlex.quote(str(stream))}"
                    await qmp.execute("migrate-incoming", {"uri": uri})
                    status, error = await wait_reporting(qmp, progress, "loading the stream")
                    if status != "completed":
                        text = "; ".join(t for t in (error, process.stderr().strip()) if t)
                        return result(False, f"QEMU refused the stream: {text}", status, text)
                    await qmp.execute("cont")
                    deadline = time.monotonic() + window
                    while True:
                        text = console_path.read_text(errors="replace")
                        verdict, why = _verdict(parse_console(text), expect)
                        if verdict is not None:
                            return result(verdict, why, status)
                        run = await qmp.execute("query-status")
                        assert isinstance(run, dict)
                        if run.get("status") == "guest-panicked":
                            return result(False, "the guest panicked (pvpanic)", status)
                        if progress is not None:
                            seen = parse_console(text)
                            beat = f"heartbeat {seen.last.counter}" if seen.last else "no heartbeat"
                            left = max(deadline - time.monotonic(), 0)
                            progress(f"running after cont: {beat}, {left:.0f} s left to show it")
                        if time.monotonic() > deadline:
                            seen = parse_console(text)
                            what = (
                                f"stopped after beat {seen.last.counter}"
                                if seen.last
                                else "printed no heartbeat"
                            )
                            return result(
                                False,
                                f"the guest {what} within {window:g} s of cont "
                                f"(run state {run.get('status')})",
                                status,
                            )
                        await asyncio.sleep(CONSOLE_POLL)
                except QMP_LOST:
                    process.wait(EXIT_GRACE)
                    text = process.stderr().strip()
                    return result(False, f"QEMU exited: {text}", "exited", text)
                except ExecuteError as exc:
                    return result(False, f"QEMU refused: {exc}", "failed", str(exc))
                finally:
                    await quit_qemu(qmp)

            try:
                return run_bounded(judge(), timeout, f"QEMU {qemu} survives")
            except QemuTimeout as exc:
                stderr = process.stderr().strip()  # e.g. why an exec:cat could not read the file
                why = f"{exc}; QEMU stderr: {stderr}" if stderr else str(exc)
                return result(False, why, "timeout", stderr)
