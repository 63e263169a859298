"""miglab.containers.qcow2: ``savevm`` snapshots made by QEMU 5.2, 7.2, 10.0 and 11.1, judged by ``-loadvm``."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import miglab
from miglab.compat.qemu import convert_stream
from miglab.containers import container_name, qcow2
from miglab.errors import LimitExceeded, MiglabError, MigrationFormatError, TruncatedStreamError
from miglab.limits import LIMITS
from miglab.qemu import find_qemu
from miglab.qemu.saved import judge_loadvm, make_snapshot, qemu_img_check
from tests.helpers import DATA

pytestmark = [pytest.mark.qemu, pytest.mark.xdist_group("qcow2")]  # files made once
BUILDS = {"5.2": "pc-q35-5.2", "7.2": "pc-q35-7.2", "10.0": "pc-q35-10.0", "11.1": "pc-q35-11.1"}
#: (made by, machine, loaded by after miglab converted the snapshot): up and down a release.
CROSS = [
    ("7.2", "pc-q35-7.2", "10.0"),
    ("10.0", "pc-q35-7.2", "7.2"),
    ("7.2", "pc-q35-7.2", "11.1"),
    ("11.1", "pc-q35-7.2", "7.2"),
    ("5.2", "pc-q35-5.2", "7.2"),
    ("7.2", "pc-q35-5.2", "5.2"),
]


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("qcow2")
    made = {}
    for version, machine in BUILDS.items():
        disk = out / f"q{version}.qcow2"
        make_snapshot(find_qemu(version), disk, "first", machine=machine)
        make_snapshot(find_qemu(version), disk, "second", machine=machine, run_seconds=2)
        made[version] = disk
    for version, machine in {(v, m) for v, m, _ in CROSS}:
        made[f"{version}/{machine}"] = make_snapshot(
            find_qemu(version), out / f"q{version}-{machine}.qcow2", "old", machine=machine
        )
    return made


def _header(raw: bytes) -> tuple[int, int]:
    """(nb_snapshots, snapshots_offset), read straight from the header."""
    return struct.unpack_from(">IQ", raw, 60)


def _raw_state(disk: Path, snap: qcow2.Snapshot) -> bytes:
    """The snapshot's VM state read straight from the file through its own L1 table (qcow2.txt)."""
    raw = disk.read_bytes()
    bits = struct.unpack_from(">I", raw, 20)[0]
    cs, l2_entries = 1 << bits, 1 << (bits - 3)
    size = struct.unpack_from(">Q", raw, 24)[0]
    first = -(-size // (cs * l2_entries))  # l1_vm_state_index: past the disk, in L1 units
    l1 = struct.unpack_from(f">{snap.l1_size}Q", raw, snap.l1_table_offset)
    out = bytearray()
    for n in range(-(-snap.vm_state_size // cs)):
        l2_at = l1[first + n // l2_entries] & 0x00FFFFFFFFFFFE00
        entry = struct.unpack_from(">Q", raw, l2_at + 8 * (n % l2_entries))[0] if l2_at else 0
        host = entry & 0x00FFFFFFFFFFFE00
        out += raw[host : host + cs] if host else bytes(cs)
    return bytes(out[: snap.vm_state_size])


@pytest.mark.parametrize("version", BUILDS)
def test_reads_the_state_byte_exact(disks: dict[str, Path], version: str) -> None:
    for snap in qcow2.snapshots(disks[version]):
        stream = miglab.load(disks[version], snapshot=snap.name)
        assert stream.to_bytes() == _raw_state(disks[version], snap)


@pytest.mark.parametrize("version", BUILDS)
def test_lists_snapshots_and_reads_their_state(disks: dict[str, Path], version: str) -> None:
    raw = disks[version].read_bytes()
    table = qcow2.snapshots(disks[version])
    assert [s.name for s in table] == ["first", "second"]
    assert len(table) == _header(raw)[0] and table[0].offset == _header(raw)[1]
    for snap in table:
        stream = miglab.load(disks[version], snapshot=snap.name)
        assert container_name(stream) == "qcow2-snapshot"
        assert stream.machine == BUILDS[version] and stream.vmdesc is not None


@pytest.mark.parametrize("version", BUILDS)
def test_state_read_loads_as_a_migration_stream(
    disks: dict[str, Path], version: str, tmp_path: Path
) -> None:
    stream = miglab.load(disks[version], snapshot="first")
    seq = miglab.save(stream, tmp_path / "state.mig", container=None)
    verdict = find_qemu(version).judge(seq, machine=BUILDS[version])
    assert verdict.accepted, verdict.stderr


@pytest.mark.parametrize("version", BUILDS)
def test_written_image_checks_clean_and_loadvm_works(
    disks: dict[str, Path], version: str, tmp_path: Path
) -> None:
    stream = miglab.load(disks[version], snapshot="first")
    out = miglab.save(stream, tmp_path / "new.qcow2")
    check = qemu_img_check(out)
    assert check.returncode == 0, check.stdout + check.stderr
    assert miglab.load(out, snapshot="first").to_bytes() == stream.to_bytes()
    qemu = find_qemu(version)
    for name in ("first", "second"):
        verdict = judge_loadvm(qemu, out, name, machine=BUILDS[version])
        assert verdict.accepted, verdict.stderr


def test_loadvm_refuses_a_wrong_state(disks: dict[str, Path], tmp_path: Path) -> None:
    """The judge can fail: an i440fx state in a q35 snapshot does not load."""
    stream = miglab.load(disks["7.2"], snapshot="first")
    wrong = miglab.load(DATA / "q72-pc-i440fx-7.2-default.mig")
    out = miglab.save(wrong, tmp_path / "wrong.qcow2", container=stream.container)
    assert qemu_img_check(out).returncode == 0
    verdict = judge_loadvm(find_qemu("7.2"), out, "first", machine="pc-q35-7.2")
    assert not verdict.accepted


@pytest.mark.parametrize(("made", "machine", "to"), CROSS)
def test_snapshot_converted_for_another_qemu_loads_there(
    disks: dict[str, Path], tmp_path: Path, made: str, machine: str, to: str
) -> None:
    stream = miglab.load(disks[f"{made}/{machine}"], snapshot="old")
    converted, _ = convert_stream(stream, to_qemu=to, machine=machine)
    converted.container = stream.container
    out = miglab.save(converted, tmp_path / "converted.qcow2")
    assert qemu_img_check(out).returncode == 0
    verdict = judge_loadvm(find_qemu(to), out, "old", machine=machine)
    assert verdict.accepted, verdict.stderr


def test_in_place_only_with_the_flag_and_atomically(disks: dict[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "mine.qcow2"
    shutil.copyfile(disks["10.0"], image)
    stream = miglab.load(image, snapshot="second")
    before = image.read_bytes()
    with pytest.raises(MiglabError, match="in_place=True"):
        miglab.save(stream, image)
    assert image.read_bytes() == before
    with pytest.raises(MiglabError, match="only over the image read"):
        miglab.save(stream, tmp_path / "other.qcow2", in_place=True)
    miglab.save(stream, image, in_place=True)
    assert qemu_img_check(image).returncode == 0
    assert judge_loadvm(find_qemu("10.0"), image, "second", machine="pc-q35-10.0").accepted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.qcow2"]


def test_a_planted_link_is_replaced_and_a_failed_write_changes_nothing(
    disks: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "mine.qcow2"
    shutil.copyfile(disks["10.0"], image)
    before = image.read_bytes()
    victim, out = tmp_path / "victim", tmp_path / "out.qcow2"
    victim.write_bytes(b"the user's file\n")
    out.symlink_to(victim)
    stream = miglab.load(image, snapshot="second")
    monkeypatch.setattr(LIMITS, "output_slack", 0)
    monkeypatch.setattr(LIMITS, "output_bytes_per_input_byte", 0)
    for target, in_place in ((out, False), (image, True)):
        with pytest.raises(LimitExceeded, match="more output than"):
            miglab.save(stream, target, in_place=in_place)
    assert out.readlink() == victim and victim.read_bytes() == b"the user's file\n"
    assert image.read_bytes() == before
    monkeypatch.undo()
    miglab.save(stream, out)
    assert not out.is_symlink() and victim.read_bytes() == b"the user's file\n"
    assert image.read_bytes() == before and qemu_img_check(out).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.qcow2", "out.qcow2", "victim"]


def test_choosing_a_snapshot(disks: dict[str, Path]) -> None:
    with pytest.raises(MiglabError, match="first, second"):
        miglab.load(disks["7.2"])
    with pytest.raises(MiglabError, match="no snapshot 'nope'"):
        miglab.load(disks["7.2"], snapshot="nope")
    assert miglab.load(disks["7.2"], snapshot="2").container.snapshot.name == "second"


# --- hostile input --------------------------------------------------------------------------
def _edit(raw: bytes, at: int, data: bytes) -> bytes:
    return raw[:at] + data + raw[at + len(data) :]


def test_hostile_images(disks: dict[str, Path]) -> None:
    raw = disks["7.2"].read_bytes()
    table = qcow2.snapshots(disks["7.2"])
    first = table[0]
    nb, snaps_at = _header(raw)
    l1 = struct.unpack_from(">Q", raw, first.l1_table_offset + 8)[0] & 0x00FFFFFFFFFFFE00
    cases = [
        (raw[:50], TruncatedStreamError, 50),
        (_edit(raw, 4, struct.pack(">I", 9)), MigrationFormatError, 4),
        (_edit(raw, 20, struct.pack(">I", 40)), MigrationFormatError, 20),
        (_edit(raw, 72, struct.pack(">Q", 16)), MigrationFormatError, 72),
        (_edit(raw, 60, struct.pack(">I", 1 << 30)), LimitExceeded, 60),
        (_edit(raw, 64, struct.pack(">Q", len(raw) - 8)), TruncatedStreamError, len(raw) - 8),
        (_edit(raw, snaps_at, struct.pack(">Q", 12345)), MigrationFormatError, snaps_at),
        (_edit(raw, l1, struct.pack(">Q", (1 << 62) | 0x50000)), MigrationFormatError, l1),
        (
            _edit(raw, first.l1_table_offset + 8, struct.pack(">Q", 1 << 50)),
            MigrationFormatError,
            first.l1_table_offset + 8,
        ),
        (
            _edit(raw, first.offset + 40, struct.pack(">Q", 1 << 62)),
            MigrationFormatError,
            first.offset + 32,
        ),
    ]
    for data, error, offset in cases:
        with pytest.raises(error) as err:
            miglab.load(data, snapshot="first")
        assert err.value.offset == offset, (error, err.value)
    assert nb == 2
