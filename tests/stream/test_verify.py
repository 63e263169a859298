"""``verify``: clean on every real stream, and each kind of inconsistency found where it is."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import miglab
from miglab.cli import main
from miglab.findings import errors
from miglab.stream.model import Section, SectionKind
from miglab.stream.ram import RamPayload
from miglab.stream.verify import verify
from miglab.wire import RamFlag
from tests.helpers import DATA

BASE = DATA / "q72-pc-q35-7.2-default.mig"


def codes(data: bytes) -> set[str]:
    return {f.code for f in errors(verify(data))}


def test_real_streams_have_no_errors(stream_path: Path):
    found = [f.code for f in errors(verify(stream_path))]
    stream = miglab.load(stream_path)
    if stream.vmdesc is None and not any(s.footer for s in stream.sections):
        # QEMU <= 2.2: nothing shows where the last undescribed section ends.
        assert found == ["end-guessed"]
    else:
        assert found == []


def test_trailing_garbage():
    data = BASE.read_bytes()
    found = errors(verify(data + b"junk"))
    assert [(f.code, f.offset) for f in found] == [("trailing-bytes", len(data))]


def test_part_without_start_then_keeps_going():
    s = miglab.load(BASE)
    start = s.records[0]
    assert isinstance(start, Section) and start.kind is SectionKind.START
    s.records = s.records[1:]
    data = s.to_bytes()
    found = errors(verify(data))
    assert found[0].code == "load" and "no START" in found[0].message
    assert found[0].offset == s.records[0].offset - start.size


def test_two_bad_footers_both_reported():
    data = bytearray(BASE.read_bytes())
    s = miglab.load(BASE)
    devs = [r for r in s.sections if r.kind is SectionKind.FULL and r.footer][3:5]
    for r in devs:
        data[r.offset + r.size - 1] ^= 0x40  # low byte of the footer's section id
    found = errors(verify(bytes(data)))
    assert found[0].code == "load" and found[0].offset == devs[0].offset + devs[0].size - 4
    assert ("footer-id", devs[1].offset + devs[1].size - 4) in {(f.code, f.offset) for f in found}


def test_duplicate_section_and_missing_end():
    s = miglab.load(BASE)
    dev = next(r for r in s.sections if r.kind is SectionKind.FULL)
    end = next(r for r in s.sections if r.kind is SectionKind.END)
    s.records.insert(s.records.index(dev) + 1, dev)
    s.records.remove(end)
    assert {"duplicate-section", "duplicate-section-id", "no-end"} <= codes(s.to_bytes())


def test_page_moved_onto_another_is_never_sent():
    s = miglab.load(BASE)
    part = next(
        r.payload for r in s.sections if isinstance(r.payload, RamPayload) and len(r.payload) > 100
    )
    i = 50
    part.words[i] = part.words[i + 1]  # same block offset twice: one page never sent
    assert "page-never-sent" in codes(s.to_bytes())


def test_page_beyond_its_block():
    s = miglab.load(BASE)
    first = s.records[0].payload
    assert isinstance(first, RamPayload)
    mem = int(np.flatnonzero(first.flags & RamFlag.MEM_SIZE)[0])
    blocks = s.ram.blocks
    shrunk = blocks[0].used_length // 2
    listing = b"".join(
        bytes([len(b.name)])
        + b.name.encode()
        + struct.pack(">Q", shrunk if k == 0 else b.used_length)
        for k, b in enumerate(blocks)
    )
    total = sum(b.used_length for b in blocks) - blocks[0].used_length + shrunk
    first.words[mem] = np.uint64(total | RamFlag.MEM_SIZE)
    first.overrides[mem] = listing
    found = [f for f in errors(verify(s.to_bytes())) if f.code == "page-beyond-block"]
    assert found and "'pc.ram'" in found[0].message


def test_vmdesc_against_sections():
    s = miglab.load(BASE)
    assert s.vmdesc is not None
    s.vmdesc["devices"].append(
        {"name": "ghost", "instance_id": 0, "vmsd_name": "ghost", "version": 1}
    )
    gone = s.vmdesc["devices"].pop(0)
    found = codes(s.to_bytes())
    assert {"vmdesc-no-section", "section-not-in-vmdesc"} <= found, (found, gone)


def test_vmdesc_page_size_that_the_ram_contradicts():
    s = miglab.load(DATA / "q100-pc-q35-10.0-default.mig")
    assert s.vmdesc is not None
    s.vmdesc["page_size"] = 8192
    found = errors(verify(s.to_bytes()))
    part = next(r for r in s.sections if r.kind is SectionKind.PART)
    assert found and found[0].code == "load"
    assert part.offset <= found[0].offset < part.offset + part.size


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["verify", str(BASE)]) == 0
    bad = tmp_path / "bad.mig"
    bad.write_bytes(BASE.read_bytes() + b"x")
    capsys.readouterr()
    assert main(["verify", str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["findings"][0]["code"] == "trailing-bytes"
    assert main(["verify", str(tmp_path / "missing.mig")]) == 2


OLD = DATA / "q72-pc-i440fx-2.2-default.mig"  # no footers, no vmdesc: every section undecoded


def _flip_header(name: str, instance: int, field: str, byte: int, bit: int) -> tuple[bytes, int]:
    """OLD with one bit of a section header's be32 ``field`` flipped (byte 3 is the lowest)."""
    raw = OLD.read_bytes()
    s = next(
        r
        for r in miglab.load(raw).sections
        if r.kind.has_full_header and r.name == name and r.instance_id == instance
    )
    at = s.offset + 1 if field == "id" else s.offset + 6 + len(name)  # type, be32 id, idstr
    bad = bytearray(raw)
    bad[at + byte] ^= 1 << bit
    return bytes(bad), s.offset


@pytest.mark.parametrize(
    ("name", "instance", "byte", "bit"),
    [
        ("hpet", 0, 3, 0),  # a lone instance numbered 1
        ("timer", 0, 0, 7),  # the first section after RAM: read directly, never merged
        ("dma", 1, 3, 1),  # dma 0, 1 -> dma 0, 3
        ("cpu", 0, 2, 0),  # cpu 256 beside cpu_common 0
        ("cpu_common", 0, 3, 2),
        ("apic", 0, 3, 1),  # CPU 0's APIC is APIC id 0
    ],
)
def test_a_low_instance_id_flip_without_vmdesc_is_found(
    name: str, instance: int, byte: int, bit: int
):
    raw = OLD.read_bytes()
    bad, at = _flip_header(name, instance, "instance", byte, bit)
    # The stream still loads, with the same sections: only the numbering shows it.
    assert [r.offset for r in miglab.load(bad).sections] == [
        r.offset for r in miglab.load(raw).sections
    ]
    found = [f for f in errors(verify(bad)) if f.code == "instance-id"]
    assert found and all(name.split("_")[0] in f.message for f in found)
    assert at in {f.offset for f in found} or name == "cpu"  # cpu vs cpu_common: the latter's


def test_a_section_id_flip_out_of_order_is_found():
    bad, at = _flip_header("cpu", 0, "id", 3, 5)  # id 5 -> 37 (no section's), before 6
    assert codes(bad) == {"end-guessed", "section-id-order"}
    (found,) = [f for f in errors(verify(bad)) if f.code == "section-id-order"]
    nxt = min(r.offset for r in miglab.load(bad).sections if r.offset > at)
    assert found.offset == nxt and "'cpu'" in found.message


def test_an_idstr_length_flip_that_swallows_the_ids_is_found():
    raw = bytearray((DATA / "q100-pc-q35-10.0-misc.mig").read_bytes())
    ram = miglab.load(bytes(raw)).sections[0]
    assert ram.name == "ram" and ram.kind is SectionKind.START
    raw[ram.offset + 5] ^= 8  # idstr length 3 -> 11: "ram" and its instance and version ids
    assert miglab.load(bytes(raw)).sections[0].name == "ram" + "\0" * 7 + "\x04"
    found = [f for f in errors(verify(bytes(raw))) if f.code == "section-name"]
    assert [f.offset for f in found] == [ram.offset]


def test_an_address_in_the_ram_end_word_is_found():
    raw = bytearray(BASE.read_bytes())
    end = next(s for s in miglab.load(bytes(raw)).sections if s.kind is SectionKind.END)
    assert isinstance(end.payload, RamPayload) and end.payload.flags[-1] == RamFlag.EOS
    at = int(end.payload.pos[-1]) - 8
    raw[at + 3] ^= 0x20  # QEMU's loader reads only the flags of this word
    assert codes(bytes(raw)) == {"ram-eos-word"}
    assert [f.offset for f in errors(verify(bytes(raw)))] == [at]


def test_two_slirp_sections_numbered_0_by_qemu_7_2_are_a_warning():
    # QEMU < 8.2 gives every user-mode network's slirp state instance 0 (two netdevs here).
    found = verify(DATA / "live-q72-pc-q35-7.2-dirtier-xbzrle.mig")
    assert errors(found) == []
    assert [f.code for f in found if "slirp" in f.message] == ["duplicate-section"]


def test_a_lower_id_after_an_apic_that_leads_no_priority_class_is_found():
    # QEMU >= 10.2 sends the APIC first (MIG_PRI_APIC); in 7.2 it is a default section,
    # so fw_cfg's id 8 after an APIC id of 2^24 + 7 is out of order.
    raw = bytearray((DATA / "q72-pc-i440fx-2.3-default.mig").read_bytes())
    apic = next(s for s in miglab.load(bytes(raw)).sections if s.name == "apic")
    raw[apic.offset + 1] ^= 1
    assert codes(bytes(raw)) == {"section-id-order"}


_PEAK = r"""
import sys
from miglab.stream.verify import verify

def peak_kib():  # VmHWM is this process's own (getrusage's peak is carried across exec)
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1])

list(verify(sys.argv[1]))  # a small stream first: the imports and caches are in the baseline
base = peak_kib()
list(verify(sys.argv[2]))
print(peak_kib() - base)
"""


def test_verify_of_a_mapped_stream_keeps_its_pages_out_of_the_resident_set(tmp_path: Path):
    # Every check reads the input through the mapping; a check that touches a page of every
    # RAM section without releasing it made verify's peak grow with the file (4 GB at 16 GiB).
    import subprocess
    import sys

    from miglab.stream.synthetic import write_synthetic

    big = write_synthetic(
        tmp_path / "big.mig", ram_bytes=256 << 20, mix={"random": 0.5, "zero": 0.5}, passes=3
    )
    grown = subprocess.run(
        [sys.executable, "-c", _PEAK, str(DATA / "q72-pc-i440fx-2.2-default.mig"), str(big)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert int(grown) < 40 << 10, f"verify's peak grew by {int(grown) >> 10} MiB"  # KiB
