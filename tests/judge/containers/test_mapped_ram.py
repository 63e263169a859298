"""miglab.containers.mapped_ram: files QEMU 10.0 and 11.1 write with ``migrate file:`` + mapped-ram.

QEMU 5.2 (and 7.2) have no mapped-ram: the capability is "since 9.0" (``qapi/migration.json``,
``@mapped-ram``); 5.2 refusing it is tested, and their streams reach mapped-ram only through
miglab's conversion.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import miglab
from miglab.containers import container_name
from miglab.containers.libvirt import MAGIC, LibvirtSave, SaveFormat
from miglab.containers.mapped_ram import MappedRam
from miglab.errors import MigrationFormatError, TruncatedStreamError
from miglab.qemu import QemuError, find_qemu
from miglab.qemu.saved import judge_mapped_ram, make_mapped_ram
from miglab.stream import RamPayload

pytestmark = [pytest.mark.qemu, pytest.mark.xdist_group("mapped-ram")]  # files made once
MACHINE = "pc-q35-10.0"
#: The builds that write mapped-ram files, and the machine each makes its own file with.
WRITERS = {"10.0": MACHINE, "11.1": "pc-q35-11.1"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("mapped-ram")
    q10 = find_qemu("10.0")
    return {
        "mr": make_mapped_ram(q10, out / "q100.mr", machine=MACHINE, run_seconds=1.5),
        "mr72": make_mapped_ram(q10, out / "q100-72.mr", machine="pc-q35-7.2", run_seconds=1.5),
        "legacy": q10.make_stream(out / "q100.mig", machine=MACHINE, run_seconds=1.5),
        "11.1": make_mapped_ram(
            find_qemu("11.1"), out / "q111.mr", machine=WRITERS["11.1"], run_seconds=1.5
        ),
    }


def _blocks(raw: bytes) -> list[tuple[str, int, int, int]]:
    """(name, used_length, bitmap_offset, pages_offset) parsed straight from the file."""
    p = raw.index(b"\x06pc.ram")
    (total,) = struct.unpack_from(">Q", raw, p - 8)
    total &= ~0xFFF
    out, seen = [], 0
    while seen < total:
        n = raw[p]
        name = raw[p + 1 : p + 1 + n].decode()
        (length,) = struct.unpack_from(">Q", raw, p + 1 + n)
        _, _, bitmap, pages = struct.unpack_from(">IQQQ", raw, p + 9 + n)
        out.append((name, length, bitmap, pages))
        p, seen = pages + length, seen + length
    return out


def test_pages_are_views_at_their_file_offsets(files: dict[str, Path]) -> None:
    raw = files["mr"].read_bytes()
    stream = miglab.load(files["mr"])
    assert container_name(stream) == "mapped-ram" and stream.machine == MACHINE
    ram = stream.sections[0].payload
    assert isinstance(ram, RamPayload)
    by_block = {b.name: b for b in stream.ram.blocks}
    seen = 0
    for name, length, bitmap, pages in _blocks(raw):
        assert by_block[name].used_length == length
        bits = np.unpackbits(
            np.frombuffer(raw, np.uint8, -(-length // 4096 // 64) * 8, bitmap), bitorder="little"
        )
        for page in np.flatnonzero(bits[: length // 4096])[:50]:
            want = raw[pages + page * 4096 : pages + (page + 1) * 4096]
            hits = [
                i
                for i in range(len(ram))
                if ram.block[i] >= 0
                and ram.blocks[ram.block[i]].name == name
                and int(ram.offsets[i]) == page * 4096
            ]
            assert len(hits) == 1 and bytes(ram.payload(hits[0])) == want
            assert int(ram.pos[hits[0]]) == pages + page * 4096  # no copy: the file's own bytes
        seen += int(bits.sum())
    assert seen > 50  # the firmware ran: pc.ram holds data


def _own(files: dict[str, Path], version: str) -> Path:
    return files["mr"] if version == "10.0" else files[version]


@pytest.mark.parametrize("version", WRITERS)
def test_unedited_file_is_written_back_byte_exact(
    files: dict[str, Path], tmp_path: Path, version: str
) -> None:
    stream = miglab.load(_own(files, version))
    assert container_name(stream) == "mapped-ram" and stream.machine == WRITERS[version]
    out = miglab.save(stream, tmp_path / "copy.mr")
    assert out.read_bytes() == _own(files, version).read_bytes()


@pytest.mark.parametrize("version", WRITERS)
def test_to_legacy_loads_in_the_same_qemu(
    files: dict[str, Path], tmp_path: Path, version: str
) -> None:
    out = miglab.save(miglab.load(_own(files, version)), tmp_path / "seq.mig", container=None)
    assert out.read_bytes()[:4] == b"QEVM" and b"mapped-ram" not in out.read_bytes()[:200]
    verdict = find_qemu(version).judge(out, machine=WRITERS[version])
    assert verdict.accepted, verdict.stderr


def test_qemu_5_2_has_no_mapped_ram(tmp_path: Path) -> None:
    with pytest.raises(QemuError, match="mapped-ram"):
        make_mapped_ram(find_qemu("5.2"), tmp_path / "q52.mr", machine="pc-q35-5.2")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miglab.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_convert_and_compat_reach_qemu_7_2(files: dict[str, Path], tmp_path: Path) -> None:
    seq = tmp_path / "seq.mig"
    assert _cli("convert", str(files["mr72"]), "-o", str(seq), "--to", "legacy").returncode == 0
    back = tmp_path / "back.mr"
    assert _cli("convert", str(seq), "-o", str(back), "--to", "mapped-ram").returncode == 0
    assert back.read_bytes() == files["mr72"].read_bytes()  # the same page image, same layout
    old = tmp_path / "for72.mig"
    run = _cli(
        "compat", str(files["mr72"]), "-o", str(old), "--to-qemu", "7.2", "--machine", "pc-q35-7.2"
    )
    assert run.returncode == 0 and "sequential stream" in run.stdout
    verdict = find_qemu("7.2").judge(old, machine="pc-q35-7.2")
    assert verdict.accepted, verdict.stderr


def test_legacy_to_mapped_ram_loads_in_qemu_10(files: dict[str, Path], tmp_path: Path) -> None:
    stream = miglab.load(files["legacy"])
    out = miglab.save(stream, tmp_path / "made.mr", container=MappedRam())
    verdict = judge_mapped_ram(find_qemu("10.0"), out, machine=MACHINE)
    assert verdict.accepted, verdict.stderr
    again = miglab.load(out)
    assert [b.name for b in again.container.blocks] == [b.name for b in stream.ram.blocks]
    seq = miglab.save(again, tmp_path / "again.mig", container=None)
    assert find_qemu("10.0").judge(seq, machine=MACHINE).accepted


def test_inspect_names_the_container(files: dict[str, Path]) -> None:
    run = _cli("inspect", str(files["mr"]))
    assert run.returncode == 0 and run.stdout.startswith("container: mapped-ram\n")


# --- hostile input --------------------------------------------------------------------------
def _edit(raw: bytes, at: int, data: bytes) -> bytes:
    return raw[:at] + data + raw[at + len(data) :]


def test_hostile_layouts_name_the_offset(files: dict[str, Path]) -> None:
    raw = files["mr"].read_bytes()
    hdr = raw.index(b"\x06pc.ram") + 7 + 8  # pc.ram's mapped-ram header
    cases = [
        (_edit(raw, hdr, struct.pack(">I", 2)), MigrationFormatError, hdr, "version 2"),
        (_edit(raw, hdr + 4, struct.pack(">Q", 1000)), MigrationFormatError, hdr + 4, "page size"),
        (_edit(raw, hdr + 12, struct.pack(">Q", 5)), MigrationFormatError, hdr + 12, "bitmap"),
        (
            _edit(raw, hdr + 20, struct.pack(">Q", 1 << 40)),
            TruncatedStreamError,
            hdr + 20,
            "past the end",
        ),
        (raw[: hdr + 10], TruncatedStreamError, None, None),
        (raw[: len(raw) // 2], TruncatedStreamError, None, None),
        (raw[:-300], MigrationFormatError, None, None),
    ]
    for data, error, offset, text in cases:
        with pytest.raises(error, match=text) as err:
            miglab.load(data)
        if offset is not None:
            assert err.value.offset == offset


def test_cli_extract_writes_the_pages_at_their_guest_offsets(
    files: dict[str, Path], tmp_path: Path
) -> None:
    assert _cli("extract", str(files["mr"]), "-o", str(tmp_path), "--no-progress").returncode == 0
    raw = files["mr"].read_bytes()
    name, length, bitmap, pages = _blocks(raw)[0]
    assert name == "pc.ram"
    ram = (tmp_path / "ram" / "pc.ram.bin").read_bytes()
    assert len(ram) == length
    bits = np.unpackbits(
        np.frombuffer(raw, np.uint8, -(-length // 4096 // 64) * 8, bitmap), bitorder="little"
    )[: length // 4096]
    for page in range(length // 4096):
        want = raw[pages + page * 4096 : pages + (page + 1) * 4096] if bits[page] else bytes(4096)
        assert ram[page * 4096 : (page + 1) * 4096] == want


def test_libvirt_sparse_layout_offsets_count_from_the_file_start(tmp_path: Path) -> None:
    """libvirt 9.0 has no ``sparse`` format: QEMU 10.0 writes the stream after a
    libvirt header (``file:PATH,offset=N``, as libvirt >= 10.x has it do) and the
    header is put in front afterwards, as libvirt does when the save completes."""
    info = LibvirtSave(MAGIC, 2, 4096, 1, SaveFormat.SPARSE, "<domain/>", None)
    head = info.header_bytes()
    image = make_mapped_ram(
        find_qemu("10.0"), tmp_path / "sparse.img", machine=MACHINE, offset=len(head)
    )
    with image.open("r+b") as fh:
        fh.write(head)
    stream = miglab.load(image)
    assert container_name(stream) == "libvirt-sparse+mapped-ram"
    blocks = stream.container.inner.blocks
    assert blocks[0].bitmap_offset == blocks[0].header_offset + 28  # absolute, past the header
    assert all(b.pages_offset % (1 << 20) == 0 for b in blocks if b.pages_offset)
    assert miglab.save(stream, tmp_path / "copy.img").read_bytes() == image.read_bytes()
    stream.container.xml = "<domain>" + "x" * 8000 + "</domain>"  # no longer fits: data_len grows
    grown = miglab.save(stream, tmp_path / "grown.img")
    again = miglab.load(grown)
    assert again.container.stream_offset > len(head)
    verdict = judge_mapped_ram(
        find_qemu("10.0"), grown, machine=MACHINE, offset=again.container.stream_offset
    )
    assert verdict.accepted, verdict.stderr
