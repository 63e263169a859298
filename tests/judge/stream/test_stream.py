"""Real QEMU judges the streams miglab rewrote: it loads them, edited too, and refuses a broken edit.

The unit half (load, decode, write back byte for byte) is ``tests/stream/test_stream.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import miglab
from tests.helpers import DATA, RECIPES


@pytest.mark.qemu
@pytest.mark.parametrize(
    "name",
    [
        "q72-pc-q35-7.2-virtio.mig",
        "q72-pc-i440fx-7.2-default-ran.mig",
        "q100-pc-q35-10.0-usb.mig",
        "q100-pc-i440fx-10.0-net.mig",
        "q72-pc-i440fx-2.2-default.mig",
    ],
)
def test_real_qemu_accepts_streams_miglab_rewrote(name: str, tmp_path: Path) -> None:
    from miglab.qemu import find_qemu

    r = RECIPES[name]
    out = tmp_path / "rewritten.mig"
    miglab.save(miglab.load(DATA / name), out)
    verdict = find_qemu(r["qemu"]).judge(
        out,
        machine=r["machine"],
        devices=r["devices"],
        memory=r["memory"],
        extra_args=r["extra_args"],
    )
    assert verdict.accepted, verdict.stderr


@pytest.mark.qemu
def test_real_qemu_accepts_an_edited_stream_and_refuses_a_broken_edit(tmp_path: Path) -> None:
    from miglab.qemu import find_qemu

    name = "q72-pc-i440fx-7.2-default.mig"
    r = RECIPES[name]
    qemu = find_qemu(r["qemu"])
    stream = miglab.load(DATA / name)
    rtc = stream.device("mc146818rtc").payload
    cmos = bytearray(rtc.fields["cmos_data"])
    cmos[0x40] ^= 0xFF
    rtc.fields["cmos_data"] = bytes(cmos)
    good = miglab.save(stream, tmp_path / "edited.mig")
    kw = {
        "machine": r["machine"],
        "devices": r["devices"],
        "memory": r["memory"],
        "extra_args": r["extra_args"],
    }
    assert qemu.judge(good, **kw).accepted
    # Renaming the machine in the configuration block is an edit QEMU must refuse.
    stream.configuration.fields["name"] = b"pc-i440fx-7.1"
    bad = qemu.judge(miglab.save(stream, tmp_path / "renamed.mig"), **kw)
    assert not bad.accepted
    assert "Machine type received is 'pc-i440fx-7.1'" in bad.stderr
