"""Real QEMU judges miglab's cross-version conversions (7.2 <-> 10.0), both directions."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA, recipe

import miglab
from miglab.compat import convert_stream
from miglab.qemu import find_qemu

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
