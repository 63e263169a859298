"""Issue #12 §3 on qcow2: a running guest's ``savevm`` snapshot, made by one QEMU, resumes on another.

The Linux test guest (issue #8) runs on QEMU A with ``/dev/vda`` on a qcow2 overlay of its
disk, the legacy device set, on the newest q35 machine of the older build (pc-q35-7.2 or
pc-q35-5.2); it is
snapshotted with ``savevm`` once it beats with its disk and both networks.  miglab reads the
snapshot's VM state (``miglab.load(disk, snapshot=NAME)``), converts it for QEMU B
(``convert_stream``) and writes it back into a new qcow2 (``qemu-img check`` clean); QEMU B
started with ``-loadvm NAME`` on that image must resume the guest: its heartbeat counts on
from the saved console's last beat, no reboot, the disk reads right
(:func:`miglab.qemu.snapshot_guest.loadvm_running_guest`).  7.2 refuses 10.0's and 11.1's
snapshots unconverted, in its own words (10.0's: ``Unknown savevm section or instance
'slirp' 1``), and that is asserted too, so the judge can fail; the other pairs load the
snapshot as is on the old machine type (seen here: 7.2 -> 10.0 and 7.2 -> 5.2 survive
unconverted), so that run would only cost seconds and is not made for them.

CI runs 10.0 <-> 7.2, 11.1 <-> 7.2 and 11.1 <-> 10.0 (the issue's "both directions between
7.2, 10.0 and 11.1 at least");
``MIGLAB_COMPAT_FULL=1`` adds 7.2 <-> 5.2.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import miglab
from miglab.compat import convert_stream
from miglab.containers import container_name
from miglab.qemu import GuestNotFound, default_guest
from miglab.qemu.guest import device_set
from miglab.qemu.saved import qemu_img_check
from miglab.qemu.snapshot_guest import guest_overlay, loadvm_running_guest, savevm_running_guest
from tests.helpers import NEWEST_Q35, qemu_build

pytestmark = [pytest.mark.qemu, pytest.mark.xdist_group("qcow2-rescue")]  # snapshots made once
DEVICES = device_set("legacy")
NAME = "before-upgrade"
PAIRS = [
    ("10.0", "7.2"), ("7.2", "10.0"), ("11.1", "7.2"), ("7.2", "11.1"),
    ("11.1", "10.0"), ("10.0", "11.1"),
]  # fmt: skip
if os.environ.get("MIGLAB_COMPAT_FULL") == "1":
    PAIRS += [("7.2", "5.2"), ("5.2", "7.2")]

#: Pairs whose destination refuses the snapshot unconverted (the others load it as is).
REFUSED_AS_IS = {("10.0", "7.2"), ("11.1", "7.2")}


def _machine(a: str, b: str) -> str:
    """The newest q35 machine of the older of two releases."""
    return NEWEST_Q35[min(a, b, key=float)]


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, str]]:
    """(QEMU release, machine) -> (its qcow2 holding the running guest's snapshot, the console)."""
    try:
        default_guest()
    except GuestNotFound as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))
    made = {}
    for release, machine in sorted({(a, _machine(a, b)) for a, b in PAIRS}):
        out = tmp_path_factory.mktemp(f"snap-{release}-{machine}")
        image = guest_overlay(out / "disk.qcow2")
        console = savevm_running_guest(
            qemu_build(release), image, NAME, machine=machine, devices=DEVICES,
            console=out / "console-save.log",
        )  # fmt: skip
        made[release, machine] = (image, console)
    return made


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=["-".join(p) for p in PAIRS])
def test_running_guest_snapshot_resumes_under_another_release(
    snapshots: dict[tuple[str, str], tuple[Path, str]], tmp_path: Path, source: str, target: str
) -> None:
    machine = _machine(source, target)
    image, saved_console = snapshots[source, machine]
    qemu = qemu_build(target)
    if (source, target) in REFUSED_AS_IS:
        as_is, why = loadvm_running_guest(
            qemu, image, NAME, machine=machine, devices=DEVICES,
            console=tmp_path / "console-as-is.log", saved_console=saved_console, window=10,
        )  # fmt: skip
        assert not as_is, why
        assert why.startswith("QEMU exited:") and "while loading VM state" in why, why

    stream = miglab.load(image, snapshot=NAME)
    assert container_name(stream) == "qcow2-snapshot" and stream.machine == machine
    converted, report = convert_stream(
        stream, to_qemu=target, machine=machine, from_qemu=source, allow_guest_visible=True
    )
    converted.container = stream.container
    out = miglab.save(converted, tmp_path / "converted.qcow2")
    check = qemu_img_check(out)
    assert check.returncode == 0, check.stdout + check.stderr
    survived, why = loadvm_running_guest(
        qemu, out, NAME, machine=machine, devices=DEVICES,
        console=tmp_path / "console-loadvm.log", saved_console=saved_console,
        extra_args=report.options,
    )  # fmt: skip
    assert survived, f"{why}\n{report}"
