"""miglab.live.migration_report: the lines ``miglab migrate`` prints, and when a move is ok.

The reports are written out by hand (what a proxied 10.0 -> 7.2 move and a refused direct
move look like); the judge tests in tests/judge/live/test_migrate.py make real ones.
"""

from __future__ import annotations

from miglab.capabilities import mask_of
from miglab.live.migration_report import MigrationReport, QemuSide

AGREED = mask_of(["xbzrle", "compat-transforms"])


def _side(role: str, version: str, machine: str, run_state: str) -> QemuSide:
    release = version.rsplit(".", 1)[0]
    return QemuSide(
        role, f"unix:/run/{role}.qmp", version, release, machine, (machine,), AGREED,
        AGREED, run_state,
    )  # fmt: skip


def test_a_proxied_move_reads_as_the_cli_prints_it() -> None:
    report = MigrationReport(
        _side("source", "10.0.2", "pc-q35-10.0", "postmigrate"),
        _side("destination", "7.2.22", "pc-q35-7.2", "running"),
        offered=AGREED, agreed=AGREED, transforms=True, proxied=True, status="completed",
        total_ms=1200, downtime_ms=40, resumed_ms=55.4, bytes=1000, passes=3, xbzrle_pages=7,
        changes=("e1000e: one change",), options=("-global e1000e.x=off",),
    )  # fmt: skip
    assert report.ok
    assert str(report).splitlines() == [
        "source       QEMU 10.0.2 pc-q35-10.0 at unix:/run/source.qmp",
        "destination  QEMU 7.2.22 pc-q35-7.2 at unix:/run/destination.qmp",
        "offered      compat-transforms, xbzrle",
        "agreed       compat-transforms, xbzrle (encoder legacy)",
        "applied      source compat-transforms, xbzrle; destination compat-transforms, xbzrle",
        "path         miglab proxy, compat transforms on",
        "status       completed",
        "time         total 1200 ms, downtime 40 ms, running again after 55 ms",
        "sent         1000 bytes in 3 RAM passes, 7 pages as XBZRLE deltas",
        "changes      1",
        "  e1000e: one change",
        "needs        -global e1000e.x=off on the destination",
        "left         source postmigrate, destination running",
    ]


def test_a_failed_move_says_why_and_is_not_ok() -> None:
    report = MigrationReport(
        _side("source", "10.0.2", "pc-q35-10.0", "running"),
        _side("destination", "10.0.2", "pc-q35-10.0", "exited"),
        offered=AGREED, agreed=0, transforms=True, proxied=False, status="failed",
        error="destination: load of migration failed",
    )  # fmt: skip
    assert not report.ok
    lines = report.lines()
    assert lines[3:7] == [
        "agreed       - (encoder legacy)",
        "applied      source compat-transforms, xbzrle; destination compat-transforms, xbzrle",
        "path         direct",
        "status       failed",
    ]
    assert lines[7:] == [
        "error        destination: load of migration failed",
        "changes      0",
        "left         source running, destination exited",
    ]
