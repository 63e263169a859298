"""miglab.containers.libvirt: real ``virsh save`` images (Debian's libvirt 9.0, QEMU 7.2).

Every image is of the running Linux test guest, saved by libvirt in each
``save_image_format`` it has and as a managedsave, one after another in one boot, each
restored by libvirt before the next save (:mod:`miglab.qemu.libvirt_saves`, cached under
/var/cache/miglab/libvirt: a second run reads them).  Each is read (header, XML, cookie,
machine), written back byte-exact, and libvirt's own restore of it is judged by the
heartbeat; edited and converted images are restored again.
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import miglab
from miglab.containers import container_name
from miglab.containers.libvirt import HEADER_SIZE, SaveFormat
from miglab.errors import MigrationFormatError, TruncatedStreamError
from miglab.qemu.libvirt_saves import LIBVIRTS, SavedImage, restore, saved_by_libvirt

FORMATS = LIBVIRTS["9.0"].formats  # raw gzip bzip2 xz lzop, managedsave

pytestmark = [
    pytest.mark.libvirt,
    pytest.mark.qemu,  # and the test guest of issue #8 (scripts/build-guest.sh)
    pytest.mark.xdist_group("libvirt"),  # one libvirtd at a time, images made once
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("libvirtd") is None,
        reason="needs root and libvirt-daemon-system (scripts/setup.sh)",
    ),
]


@pytest.fixture(scope="module")
def saved() -> dict[str, SavedImage]:
    return saved_by_libvirt("9.0")


@pytest.fixture(scope="module")
def images(saved: dict[str, SavedImage]) -> dict[str, Path]:
    return {f: s.image for f, s in saved.items()}


def _restore(image: Path) -> str:
    return restore(image, "9.0")


@functools.cache
def _loaded(image: Path) -> miglab.Stream:
    """One load per image (a 70 MB bzip2 stream takes seconds to expand): don't edit it."""
    return miglab.load(image)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_the_header_xml_and_stream(images: dict[str, Path], fmt: str) -> None:
    stream = _loaded(images[fmt])
    info = stream.container
    kind = "raw" if fmt == "managedsave" else fmt
    assert container_name(stream) == f"libvirt-{kind}"
    raw = images[fmt].read_bytes()
    assert raw[:16] == b"LibvirtQemudSave" and info.format is SaveFormat[kind.upper()]
    assert struct.unpack_from("<I", raw, 28)[0] == SaveFormat[kind.upper()]
    assert info.data_len == struct.unpack_from("<I", raw, 20)[0]
    assert "<name>miglab-guest</name>" in info.xml and info.cookie.startswith("<cookie>")
    assert f"/console-{fmt}.log'" in info.xml  # the run this image saved wrote that console
    assert stream.machine == "pc-q35-7.2"
    names = {s.name for s in stream.sections}
    assert {"0000:00:01.0:00.0/virtio-blk", "serial"} <= names  # the Linux guest, not firmware


@pytest.mark.parametrize("fmt", FORMATS)
def test_libvirts_restore_of_each_image_survives(saved: dict[str, SavedImage], fmt: str) -> None:
    """The chain restored every image once; the heartbeat counted on across it."""
    survived, why = saved[fmt].survived()
    assert survived, why


@pytest.mark.parametrize("fmt", FORMATS)
def test_unedited_image_is_written_back_byte_exact(
    images: dict[str, Path], fmt: str, tmp_path: Path
) -> None:
    out = miglab.save(_loaded(images[fmt]), tmp_path / "copy.img")
    assert out.read_bytes() == images[fmt].read_bytes()


@pytest.mark.parametrize("fmt", ["raw", "gzip"])
def test_edited_xml_restores_with_virsh(images: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    stream = miglab.load(images[fmt])
    stream.container.xml = stream.container.xml.replace("miglab-guest", "miglab-edited")
    out = miglab.save(stream, tmp_path / "edited.img")
    again = miglab.load(out)
    assert "<name>miglab-edited</name>" in again.container.xml
    assert again.to_bytes() == stream.to_bytes()
    assert _restore(out) == "paused"


def test_grown_xml_gets_a_larger_data_len(images: dict[str, Path], tmp_path: Path) -> None:
    stream = miglab.load(images["raw"])
    old = stream.container.data_len
    stream.container.xml += "<!--" + "x" * old + "-->"
    out = miglab.save(stream, tmp_path / "grown.img")
    again = miglab.load(out)
    assert again.container.data_len > old and again.container.xml == stream.container.xml
    assert again.to_bytes() == stream.to_bytes()


def _hostile(images: dict[str, Path], edit: dict[int, bytes], cut: int | None = None) -> bytes:
    raw = bytearray(images["raw"].read_bytes()[: cut or None])
    for at, data in edit.items():
        raw[at : at + len(data)] = data
    return bytes(raw)


@pytest.mark.parametrize(
    ("edit", "cut", "error", "offset"),
    [
        ({}, 50, TruncatedStreamError, 50),
        ({}, HEADER_SIZE + 100, TruncatedStreamError, HEADER_SIZE + 100),
        ({16: struct.pack("<I", 7)}, None, MigrationFormatError, 16),
        ({28: struct.pack("<I", 9)}, None, MigrationFormatError, 28),
        ({20: struct.pack("<I", 0)}, None, MigrationFormatError, 20),
        ({32: struct.pack("<I", 0xFFFFFF)}, None, MigrationFormatError, 32),
        ({20: struct.pack("<I", 0x7FFFFFFF)}, None, TruncatedStreamError, None),
    ],
)
def test_hostile_headers(
    images: dict[str, Path],
    edit: dict[int, bytes],
    cut: int | None,
    error: type,
    offset: int | None,
) -> None:
    with pytest.raises(error) as err:
        miglab.load(_hostile(images, edit, cut))
    if offset is not None:
        assert err.value.offset == offset


def test_stream_errors_are_file_offsets(images: dict[str, Path]) -> None:
    info = miglab.load(images["raw"]).container
    at = info.stream_offset
    with pytest.raises(MigrationFormatError) as err:
        miglab.load(_hostile(images, {at: b"XXXX"}))
    assert err.value.offset == at


@pytest.fixture(scope="module")
def older_machine(images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gzip image converted by ``miglab compat`` for pc-q35-5.2 on QEMU 7.2."""
    out = tmp_path_factory.mktemp("compat") / "compat.img"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "miglab.cli",
            "compat",
            str(images["gzip"]),
            "-o",
            str(out),
            "--to-qemu",
            "7.2",
            "--machine",
            "pc-q35-5.2",
            "--allow-guest-visible",  # older machine: read-only PCI bits the guest may have read
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "libvirt domain XML: machine pc-q35-7.2 -> pc-q35-5.2" in run.stdout
    return out


def test_compat_rewrites_the_xml_machine(older_machine: Path) -> None:
    again = miglab.load(older_machine)
    assert container_name(again) == "libvirt-gzip"
    assert again.container.machine == again.machine == "pc-q35-5.2"


def test_compat_image_for_an_older_machine_restores_with_virsh(older_machine: Path) -> None:
    # the domain's pcie-root-ports hold devices: their slot/link status bits follow the
    # machine's hotplug owner (compat-qemu.json pci.slot_rules); QEMU 7.2 on pc-q35-5.2
    # refused them before ("get_pci_config_device: Bad config data: i=0x6e")
    assert _restore(older_machine) == "paused"
