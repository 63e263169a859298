"""``extract``: RAM blocks as sparse files equal to the pages in the stream, never outside DIR."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

import miglab
from miglab.cli import main
from miglab.errors import MiglabError, MigrationFormatError
from miglab.stream.extract import extract, safe_names, xbzrle_apply
from miglab.stream.ram import RamBlock, RamPayload
from miglab.wire import RamFlag
from tests.helpers import DATA

RAN = DATA / "q72-pc-q35-7.2-default-ran.mig"


def pages_in_stream(stream: miglab.Stream) -> dict[str, bytearray]:
    """Each block's bytes, rebuilt from the stream's PAGE and ZERO records in order."""
    out = {b.name: bytearray(b.used_length) for b in stream.ram.blocks}
    for s in stream.sections:
        if isinstance(s.payload, RamPayload):
            for name, off, flags, data in s.payload.pages():
                size = stream.page_size
                if flags & RamFlag.PAGE:
                    out[name][off : off + size] = data
                elif flags & RamFlag.ZERO:
                    out[name][off : off + size] = bytes([data[0]]) * size
    return out


def test_extract_equals_the_pages_qemu_sent(tmp_path: Path):
    result = extract(RAN, tmp_path / "out")
    stream = miglab.load(RAN)
    expected = pages_in_stream(stream)
    assert set(result.files.values()) == set(expected)
    for name, block in result.files.items():
        assert (tmp_path / "out" / name).read_bytes() == expected[block]
    ram = (tmp_path / "out" / "ram" / "pc.ram.bin").stat()
    assert result.data_pages > 100
    assert ram.st_size == 16 << 20
    assert ram.st_blocks * 512 < ram.st_size  # zero pages are holes
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    assert state["machine"] == stream.machine
    listing = json.loads((tmp_path / "out" / "blocks.json").read_text())
    assert listing["ram/pc.ram.bin"]["block"] == "pc.ram"


HOSTILE = [
    "../../escape",
    "/etc/passwd",
    "a\x00b",
    "x" * 255,
    "pc/ram",  # collides with pc_ram after sanitising
    "pc_ram",
    "..",
    "",
]


def hostile_stream(path: Path, names: list[str]) -> bytes:
    """``path`` with its RAM blocks renamed to ``names`` (block list bytes rewritten too)."""
    stream = miglab.load(path)
    blocks = stream.ram.blocks
    renamed = [
        RamBlock(
            names[i % len(names)] + (f"#{i}" if i >= len(names) else ""), b.used_length, b.addr
        )
        for i, b in enumerate(blocks)
    ]
    blocks[:] = renamed
    first = stream.records[0].payload
    assert isinstance(first, RamPayload) and first.block_list is not None
    mem = next(i for i, f in enumerate(first.flags.tolist()) if f & RamFlag.MEM_SIZE)
    first.overrides[mem] = b"".join(
        bytes([len(b.name.encode())]) + b.name.encode() + struct.pack(">Q", b.used_length)
        for b in renamed
    )
    return stream.to_bytes()


def test_hostile_block_names_stay_inside(tmp_path: Path):
    data = hostile_stream(RAN, HOSTILE[: len(miglab.load(RAN).ram.blocks)])
    again = miglab.load(data)
    assert [b.name for b in again.ram.blocks][:3] == HOSTILE[:3]
    (tmp_path / "out").mkdir()
    os.symlink("/tmp", tmp_path / "out" / "ram")  # a planted symlink is not followed
    with pytest.raises(MiglabError, match="cannot write into"):
        extract(data, tmp_path / "out")
    os.unlink(tmp_path / "out" / "ram")
    before = set(tmp_path.rglob("*"))
    result = extract(data, tmp_path / "out")
    created = set(tmp_path.rglob("*")) - before
    assert all(p.resolve().is_relative_to((tmp_path / "out").resolve()) for p in created)
    assert len(set(result.files)) == len(again.ram.blocks)
    expected = pages_in_stream(again)
    for name, block in result.files.items():
        assert "\x00" not in name and ".." not in name.split("/") and len(name) < 120
        assert (tmp_path / "out" / name).read_bytes() == expected[block]


def test_planted_links_are_replaced_not_written_through(tmp_path: Path):
    out, victims = tmp_path / "out", tmp_path / "victims"
    (out / "ram").mkdir(parents=True)
    victims.mkdir()
    for name in ("state", "blocks", "ram"):
        (victims / name).write_bytes(b"precious " + name.encode())
    os.symlink(victims / "state", out / "state.json")
    os.symlink(victims / "blocks", out / "blocks.json")
    os.link(victims / "ram", out / "ram" / "pc.ram.bin")
    result = extract(RAN, out)
    for name in ("state", "blocks", "ram"):
        assert (victims / name).read_bytes() == b"precious " + name.encode()
    for name in ("state.json", "blocks.json", "ram/pc.ram.bin"):
        st = (out / name).lstat()
        assert not (out / name).is_symlink() and st.st_nlink == 1
    assert json.loads((out / "state.json").read_text())["machine"] == miglab.load(RAN).machine
    assert (out / "ram" / "pc.ram.bin").read_bytes() == pages_in_stream(miglab.load(RAN))["pc.ram"]
    assert "ram/pc.ram.bin" in result.files
    assert not [p for p in out.rglob(".*.tmp")]  # no temporary file left behind


def test_extract_into_a_symlinked_directory_is_refused(tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out")
    with pytest.raises(MiglabError, match="cannot write into"):
        extract(RAN, tmp_path / "out")
    assert not list((tmp_path / "elsewhere").iterdir())


def test_safe_names():
    names = safe_names([RamBlock(n, 0) for n in HOSTILE])
    assert len(set(n.lower() for n in names)) == len(names)
    assert all(n.startswith("ram/") and n.count("/") == 1 for n in names)
    assert names[0] == "ram/escape.bin" and names[1] == "ram/etc_passwd.bin"


def test_xbzrle_delta_as_qemu_encodes_it():
    page = bytearray(b"A" * 64)
    # zero run 3, data run 2 "xy", zero run 10, data run 1 "z"
    xbzrle_apply(page, bytes([3, 2]) + b"xy" + bytes([10, 1]) + b"z")
    assert page[:16] == b"AAAxyAAAAAAAAAAz"
    with pytest.raises(MigrationFormatError):
        xbzrle_apply(bytearray(8), bytes([6, 4]) + b"abcd")


def test_cli_extract(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["extract", str(RAN), "-o", str(tmp_path / "x"), "--no-progress"]) == 0
    assert "ram/pc.ram.bin\tpc.ram" in capsys.readouterr().out
