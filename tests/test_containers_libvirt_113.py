"""miglab.containers.libvirt on libvirt 11.3: zstd, sparse and managedsave images.

Debian 13's libvirt 11.3 with Debian 13's QEMU 10.0 runs in its own chroot (``.qemu/libvirt-11.3``,
``scripts/install-qemu.sh``), started by ``scripts/libvirt-save.sh --libvirt 11.3``; it
has the two formats bookworm's libvirt 9.0 lacks (``zstd``; ``sparse``: QEMU writes a
mapped-ram stream after libvirt's header) and makes a ``virsh managedsave`` of a defined
domain.  Every image is read, written back byte-exact, and an edited one is restored by
the same libvirt.  (With QEMU 11.1 instead, libvirt 11.3 cannot restore a raw image (seen on
the raw managedsave): QEMU >= 11.0 refuses ``fd:`` migration from a regular file, QEMU commit
"migration: Remove fd: support on files", and libvirt 11.3 hands QEMU the image's fd.)
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

import miglab
from miglab.containers import container_name
from miglab.containers.libvirt import SaveFormat

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "libvirt-save.sh"
CHROOT = ROOT / ".qemu" / "libvirt-11.3" / "root"
#: image -> (container name, header format)
IMAGES = {
    "zstd": ("libvirt-zstd", SaveFormat.ZSTD),
    "sparse": ("libvirt-sparse+mapped-ram", SaveFormat.SPARSE),
    "managedsave": ("libvirt-raw", SaveFormat.RAW),
}

pytestmark = [
    pytest.mark.libvirt,
    pytest.mark.xdist_group("libvirt"),  # one libvirtd at a time, files made once
    pytest.mark.skipif(
        os.geteuid() != 0 or not (CHROOT / "usr" / "sbin" / "libvirtd").exists(),
        reason="needs root and the libvirt 11.3 chroot (scripts/setup.sh)",
    ),
]


def libvirt_113(*args: str) -> subprocess.CompletedProcess[str]:
    """``scripts/libvirt-save.sh --libvirt 11.3 ARGS``."""
    return subprocess.run(
        ["bash", str(SCRIPT), "--libvirt", "11.3", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("libvirt-11.3")
    run = libvirt_113(str(out), *IMAGES)
    assert run.returncode == 0, run.stderr
    return {name: out / f"libvirt-{name}.img" for name in IMAGES}


@pytest.mark.parametrize("name", IMAGES)
def test_reads_the_header_xml_and_stream(images: dict[str, Path], name: str) -> None:
    raw = images[name].read_bytes()
    stream = miglab.load(images[name])
    info = stream.container
    assert container_name(stream) == IMAGES[name][0]
    assert raw[:16] == b"LibvirtQemudSave"
    assert struct.unpack_from("<I", raw, 28)[0] == IMAGES[name][1] == info.format
    assert "<name>miglab-save</name>" in info.xml and info.cookie.startswith("<cookie>")
    assert stream.machine == info.machine == "pc-q35-7.2"


def test_sparse_image_is_mapped_ram_after_the_header(images: dict[str, Path]) -> None:
    """libvirt has QEMU write at ``file:PATH,offset=N``: the offsets count from the file start."""
    path = images["sparse"]
    info = miglab.load(path).container
    blocks = info.inner.blocks
    assert blocks and all(b.header_offset > info.stream_offset for b in blocks)
    assert all(b.pages_offset % (1 << 20) == 0 for b in blocks if b.pages_offset)
    assert path.stat().st_blocks * 512 < path.stat().st_size  # zero pages were never written


@pytest.mark.parametrize("name", IMAGES)
def test_unedited_image_is_written_back_byte_exact(
    images: dict[str, Path], name: str, tmp_path: Path
) -> None:
    out = miglab.save(miglab.load(images[name]), tmp_path / "copy.img")
    assert out.read_bytes() == images[name].read_bytes()


@pytest.mark.parametrize("name", IMAGES)
def test_edited_xml_restores_with_virsh(images: dict[str, Path], name: str, tmp_path: Path) -> None:
    stream = miglab.load(images[name])
    stream.container.xml = stream.container.xml.replace("miglab-save", "miglab-edited")
    out = miglab.save(stream, tmp_path / "edited.img")
    assert "<name>miglab-edited</name>" in miglab.load(out).container.xml
    run = libvirt_113("--restore", str(out))
    assert (run.returncode, run.stdout.strip()) == (0, "paused"), run.stderr
