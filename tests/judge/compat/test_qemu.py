"""Real QEMU judges miglab's cross-version conversions (7.2 <-> 10.0), both directions."""

from __future__ import annotations

from pathlib import Path

import pytest

import miglab
from miglab.compat import convert_stream
from miglab.qemu import find_qemu
from tests.helpers import DATA, recipe

SETS = ["default", "default-ran", "net", "usb", "storage", "misc", "audio", "pcie"]
CASES = [
    (fam, s, direction)
    for fam in ("q35", "i440fx")
    for s in SETS
    for direction in ("7.2", "10.0")
    if not (s == "pcie" and fam == "i440fx")
]


def _source(fam: str, device_set: str, to: str) -> Path:
    return DATA / (
        f"q100-pc-{fam}-10.0-{device_set}.mig"
        if to == "7.2"
        else f"q72-pc-{fam}-7.2-{device_set}.mig"
    )


@pytest.mark.qemu
@pytest.mark.parametrize(("fam", "device_set", "to"), CASES, ids=["-".join(c) for c in CASES])
def test_converted_stream_is_accepted(fam: str, device_set: str, to: str, tmp_path: Path) -> None:
    src = _source(fam, device_set, to)
    r = recipe(src)
    machine = f"pc-{fam}-{to}"
    out, _ = convert_stream(miglab.load(src), to_qemu=to, machine=machine, allow_guest_visible=True)
    path = miglab.save(out, tmp_path / "out.mig")
    verdict = find_qemu(to).judge(
        path, machine=machine, devices=r["devices"], memory=r["memory"], extra_args=r["extra_args"]
    )
    assert verdict.accepted, verdict.stderr


@pytest.mark.qemu
@pytest.mark.parametrize("to", ["7.2", "10.0"])
def test_raw_stream_is_refused_without_miglab(to: str) -> None:
    src = _source("q35", "default", to)
    r = recipe(src)
    verdict = find_qemu(to).judge(
        src, machine=f"pc-q35-{to}", devices=r["devices"], memory=r["memory"]
    )
    assert not verdict.accepted
    assert "Machine type received is" in verdict.stderr


def _judge(out: miglab.Stream, src: Path, to: str, machine: str, tmp_path: Path) -> None:
    r = recipe(src)
    verdict = find_qemu(to).judge(
        miglab.save(out, tmp_path / "out.mig"),
        machine=machine,
        devices=r["devices"],
        memory=r["memory"],
        extra_args=r["extra_args"],
    )
    assert verdict.accepted, verdict.stderr


SAME_MACHINE = [
    *[(f"q100-pc-q35-7.2-{s}.mig", "10.0", "7.2") for s in ("default", "net", "virtio", "usb")],
    *[(f"q72-pc-q35-7.2-{s}.mig", "7.2", "10.0") for s in ("net", "usb", "pcie", "virtio")],
]


@pytest.mark.qemu
@pytest.mark.parametrize(("name", "src", "to"), SAME_MACHINE, ids=[c[0] for c in SAME_MACHINE])
def test_same_machine_conversion_keeps_machine_decided_state(
    name: str, src: str, to: str, tmp_path: Path
) -> None:
    """QEMU 10.0 on pc-q35-7.2 gives devices 7.2's read-only PCI config and MSI-X layout:
    keeping the machine type, a conversion must not touch them (issue 4, report 2)."""
    out, report = convert_stream(
        miglab.load(DATA / name), to_qemu=to, machine="pc-q35-7.2", from_qemu=src
    )
    assert not [c for c in report if "config" in c.path or c.device == "virtio-balloon"]
    assert not report.guest_visible
    _judge(out, DATA / name, to, "pc-q35-7.2", tmp_path)


OLD_MACHINE = [
    ("q100-pc-i440fx-2.4-default.mig", "10.0", "7.2"),
    ("q72-pc-i440fx-2.4-default.mig", "7.2", "10.0"),
]


@pytest.mark.qemu
@pytest.mark.parametrize(("name", "src", "to"), OLD_MACHINE, ids=[c[0] for c in OLD_MACHINE])
def test_old_machine_both_builds_have_converts(
    name: str, src: str, to: str, tmp_path: Path
) -> None:
    """pc-i440fx-2.4 names no build: ``from_qemu`` says which wrote it (issue 4, report 1)."""
    out, report = convert_stream(
        miglab.load(DATA / name), to_qemu=to, machine="pc-i440fx-2.4", from_qemu=src
    )
    assert {c.device for c in report} == {"hpet", "globalstate"}
    _judge(out, DATA / name, to, "pc-i440fx-2.4", tmp_path)
