"""miglab.live.migrate (``miglab migrate``) on real QEMUs moving the running test guest.

Every test boots the guest (:func:`miglab.qemu.vms.running_vm`, the ``live`` device set: two
user-mode networks, virtio-net, virtio-blk, e1000, xHCI with a USB tablet) on each build's
newest q35 machine type, moves it live with :func:`migrate` and judges the destination by the
guest's heartbeat (:meth:`VM.survival`: the counter continues from the source's last beat,
disk and both networks answer).  Capabilities are checked on both QEMUs over a fresh QMP
connection, not through miglab's own report.

Faults (issue 11 section 5) each leave the source running, and each such test then moves that
same source successfully, so nothing was left half-done: a destination that refuses, the source
dying mid-stream, the proxy killed mid-stream.

Cost: each case boots one guest (8-10 s on a quiet machine, up to ~50 s under load) and
migrates 128 MiB once or twice.  CI runs the cases of :data:`CI_CROSS` across releases;
``MIGLAB_COMPAT_FULL=1`` runs all six of issue 11 section 4.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from miglab.capabilities import names_of
from miglab.live.migrate import MigrateError, migrate
from miglab.live.migration_report import MigrationReport
from miglab.qemu import (
    DEVICE_SETS,
    DeviceSet,
    GuestNotFound,
    QemuNotFound,
    default_guest,
    find_qemu,
    private_event_loop,
)
from miglab.qemu.vms import VM, running_vm, waiting_vm

pytestmark = pytest.mark.qemu

#: What both QEMUs must have enabled after miglab's negotiation (every build lists all three).
AGREED = {"events", "xbzrle", "auto-converge"}
#: Issue 11 section 4: (source, destination) across releases.
ALL_CROSS = [
    ("10.0", "7.2"),
    ("11.1", "7.2"),
    ("11.1", "5.2"),
    ("10.0", "5.2"),
    ("7.2", "11.1"),
    ("5.2", "11.1"),
]
#: A representative subset for CI: the widest gap down and up (11.1 -> 7.2 is the
#: compat-transforms bit test below).
CI_CROSS = [("11.1", "5.2"), ("5.2", "11.1")]
CROSS = ALL_CROSS if os.environ.get("MIGLAB_COMPAT_FULL") == "1" else CI_CROSS
#: Slow enough that a fault lands mid-stream (128 MiB at 4 MiB/s: over 30 s).
SLOW = 4 << 20
#: Fast enough not to matter.
FAST = 1 << 30


def _need(*versions: str) -> None:
    try:
        default_guest()
        for version in versions:
            find_qemu(version)
    except (GuestNotFound, QemuNotFound) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI must have it: scripts/setup.sh)")
        pytest.skip(str(exc))


def q35(version: str) -> str:
    return f"pc-q35-{version}"


@contextlib.contextmanager
def source(version: str) -> Iterator[VM]:
    _need(version)
    with running_vm(version, q35(version)) as vm:
        yield vm


def destination(version: str, devices: str | DeviceSet = "live") -> VM:
    _need(version)
    return waiting_vm(version, q35(version), devices)


def without_e1000() -> DeviceSet:
    """The ``live`` set less its e1000 (so a destination lacks a device the source sends)."""
    live = DEVICE_SETS["live"]
    options = list(live.options)
    at = options.index("e1000,netdev=n1")
    return DeviceSet("live-no-e1000", (*options[: at - 1], *options[at + 1 :]), 1)


def without_vectors() -> DeviceSet:
    """The ``live`` set without its ``-global virtio-net-pci.vectors=4``: virtio-net gets the
    machine type's default vector count (3 on pc-q35-5.2, 4 on newer machines)."""
    options = list(DEVICE_SETS["live"].options)
    at = options.index("virtio-net-pci.vectors=4")
    return DeviceSet("live-default-vectors", (*options[: at - 1], *options[at + 1 :]), 2)


def ask(vm: VM, command: str) -> Any:
    """``command``'s reply from QEMU itself, over a fresh QMP connection."""
    with private_event_loop():
        monitor = QEMUMonitorProtocol(vm.qmp.removeprefix("unix:"))
        monitor.connect()
        try:
            return monitor.cmd_raw(command)["return"]
        finally:
            monitor.close()


def enabled_on(vm: VM) -> set[str]:
    """The capabilities QEMU itself reports enabled, asked over a fresh QMP connection."""
    return {e["capability"] for e in ask(vm, "query-migrate-capabilities") if e["state"]}


def assert_moved(report: MigrationReport, src: VM, dst: VM) -> None:
    """The migration completed, capabilities were applied on both, and the guest runs on."""
    assert report.status == "completed", str(report)
    assert report.destination.run_state == "running"
    assert report.source.run_state == "postmigrate"
    assert set(names_of(report.agreed)) == AGREED
    assert enabled_on(src) == AGREED == enabled_on(dst)
    assert report.total_ms is not None and report.downtime_ms is not None and report.passes >= 1
    assert report.bytes > 32 << 20  # the loaded kernel's text and data alone are more
    ok, why = dst.survival(src.console().last)
    assert ok, f"{why}\n{report}"


def assert_started_with(options: tuple[str, ...], dst: VM) -> None:
    """Every destination option the conversion asks for is one the destination has (the
    ``live`` set fixes virtio-net's vector count on every build for this reason)."""
    pairs = list(zip(options[::2], options[1::2], strict=True))
    have = list(zip(dst.devices.options, dst.devices.options[1:], strict=False))
    assert all(pair in have for pair in pairs), (options, dst.devices.options)


def assert_failed_cleanly(report: MigrationReport, src: VM, dst: VM, *texts: str) -> None:
    """Failed with QEMU's text, the source still runs the guest, the destination is gone."""
    assert report.status == "failed", str(report)
    for text in texts:
        assert text in report.error, str(report)
    assert report.source.run_state == "running"
    assert dst.process.wait(10) is not None, "the failed destination is still there"
    before = src.console().last
    assert before is not None
    time.sleep(3)  # a few heartbeats: the source guest keeps going
    after = src.console().last
    assert after is not None and after.counter > before.counter


def killer(action: Callable[[], None], after: float) -> threading.Timer:
    timer = threading.Timer(after, action)
    timer.start()
    return timer


# --- same release --------------------------------------------------------------------------


def test_refused_then_moved_directly() -> None:
    """A destination without the e1000 refuses; the source runs on and then moves."""
    with source("10.0") as src:
        with destination("10.0", without_e1000()) as wrong:
            report = migrate(src.qmp, wrong.qmp, proxy="never", bandwidth=FAST)
            # QEMU 10.0's own words (kept by exit-on-error=false, then told to quit); the
            # detail QEMU prints only on its stderr
            assert_failed_cleanly(report, src, wrong, "destination: load of migration failed")
            assert "e1000" in wrong.stderr()
        with destination("10.0") as dst:  # this time through the command line
            run = subprocess.run(
                [sys.executable, "-m", "miglab", "migrate", "--src", src.qmp, "--dst", dst.qmp,
                 "--proxy", "never", "--bandwidth", str(FAST), "--json"],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert run.returncode == 0, run.stdout + run.stderr
            out = json.loads(run.stdout)
            assert out["status"] == "completed" and not out["proxied"] and out["changes"] == []
            assert set(out["agreed"]) == AGREED == set(out["destination"]["enabled"])
            assert out["source"]["run_state"] == "postmigrate"
            assert enabled_on(src) == AGREED == enabled_on(dst)
            ok, why = dst.survival(src.console().last)
            assert ok, why


def test_cli_names_an_unreachable_endpoint(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "miglab", "migrate", "--src", f"unix:{tmp_path / 'none'}",
         "--dst", f"unix:{tmp_path / 'none2'}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "cannot reach the source's QMP" in run.stderr and "Traceback" not in run.stderr


def test_source_dies_mid_stream() -> None:
    with source("10.0") as src, destination("10.0") as dst:
        timer = killer(src.kill, 4.0)
        try:
            report = migrate(src.qmp, dst.qmp, proxy="never", bandwidth=SLOW)
        finally:
            timer.cancel()
        assert report.status == "failed"
        assert "source: QEMU exited during the migration" in report.error
        assert "destination: load of migration failed" in report.error  # QEMU 10.0's words
        assert report.source.run_state == "exited"
        assert report.destination.run_state == "exited"
        assert dst.process.wait(10) is not None


def test_proxy_killed_then_moved_through_the_proxy(tmp_path: Path) -> None:
    """A ``miglab proxy`` process killed mid-stream; then the same source through the proxy."""
    with source("10.0") as src:
        with destination("10.0") as dst:
            via, incoming = f"unix:{tmp_path / 'proxy.sock'}", f"unix:{tmp_path / 'dst.sock'}"
            proxy = subprocess.Popen(
                [sys.executable, "-m", "miglab", "proxy", "--listen", via, "--connect", incoming,
                 "--src-qemu", "10.0", "--to-qemu", "10.0", "--machine", q35("10.0"), "--once"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                while not (tmp_path / "proxy.sock").exists():
                    assert proxy.poll() is None, "miglab proxy exited"
                    time.sleep(0.05)
                timer = killer(proxy.kill, 4.0)
                report = migrate(src.qmp, dst.qmp, via=via, incoming=incoming, bandwidth=SLOW)
                timer.cancel()
            finally:
                proxy.kill()
                proxy.wait()
            assert report.proxied
            assert_failed_cleanly(report, src, dst, "destination:")
        with destination("10.0") as dst:
            report = migrate(src.qmp, dst.qmp, proxy="always", bandwidth=FAST)
            assert report.proxied and report.proxy is not None and report.proxy.error is None
            assert report.changes == ()  # same release: byte-transparent
            assert report.bytes == report.proxy.bytes_out
            assert_moved(report, src, dst)


# --- across releases -------------------------------------------------------------------------


def test_compat_transforms_bit_decides() -> None:
    """Without ``compat-transforms`` the proxy forwards 11.1's stream as is and 7.2 refuses
    it; with the bit the same source moves and the guest runs on 7.2."""
    with source("11.1") as src:
        with destination("7.2") as dst:
            report = migrate(src.qmp, dst.qmp, without=["compat-transforms"], bandwidth=FAST,
                             allow_guest_visible=True)  # fmt: skip
            assert report.proxied and not report.transforms and report.changes == ()
            assert_failed_cleanly(report, src, dst)
        with destination("7.2") as dst:
            report = migrate(src.qmp, dst.qmp, bandwidth=FAST, allow_guest_visible=True)
            assert report.proxied and report.transforms and report.changes
            assert_started_with(report.options, dst)
            assert_moved(report, src, dst)


def test_a_destination_without_the_options_the_conversion_needs_is_refused() -> None:
    """The conversion keeps virtio-net's 4 MSI-X vectors for pc-q35-5.2 (whose default is
    3) and needs ``-global virtio-net-pci.vectors=4`` on the destination: one started
    without it is refused before anything is set on either QEMU.  (The check needs no
    booted guest: the source is only started.)"""
    _need("10.0", "5.2")
    with VM("10.0", q35("10.0"), "live") as src, destination("5.2", without_vectors()) as dst:
        src.wait_qmp(60)
        before = enabled_on(src), enabled_on(dst)
        with pytest.raises(MigrateError) as err:
            migrate(src.qmp, dst.qmp, bandwidth=FAST, allow_guest_visible=True)
        message = str(err.value)
        assert "started without an option the conversion needs" in message
        assert "-global virtio-net-pci.vectors=4 (/machine/peripheral-anon/" in message
        assert "has 4 MSI-X vectors, the destination's 3, pc-q35-5.2's default" in message
        assert (enabled_on(src), enabled_on(dst)) == before
        assert ask(src, "query-status")["status"] == "running"
        assert ask(dst, "query-status")["status"] == "inmigrate"
        assert ask(src, "query-migrate") == {}  # no migration was started


@pytest.mark.parametrize(("src_v", "dst_v"), CROSS, ids=[f"{a}-{b}" for a, b in CROSS])
def test_running_guest_moves_across_releases(src_v: str, dst_v: str) -> None:
    with source(src_v) as src, destination(dst_v) as dst:
        report = migrate(src.qmp, dst.qmp, bandwidth=FAST, allow_guest_visible=True)
        assert report.proxied and report.transforms and report.changes, str(report)
        assert report.destination.machine == q35(dst_v)
        assert_started_with(report.options, dst)
        assert_moved(report, src, dst)
