"""``verify``: clean on every real stream, and each kind of inconsistency found where it is."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import miglab
from miglab.cli import main
from miglab.stream.constants import RamFlag
from miglab.stream.model import Section, SectionKind
from miglab.stream.ram import RamPayload
from miglab.stream.verify import errors, verify
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
