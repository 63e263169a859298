"""miglab.containers.libvirt on libvirt 11.3: every format it has, sparse and zstd included.

Debian 13's libvirt 11.3 with Debian 13's QEMU 10.0 runs in its own chroot (``.qemu/libvirt-11.3``,
``scripts/install-qemu.sh``), started by ``scripts/libvirt-save.sh --libvirt 11.3``; it
has the two formats bookworm's libvirt 9.0 lacks (``zstd``; ``sparse``: QEMU writes a
mapped-ram stream after libvirt's header).  The running Linux test guest is saved in each
format and as a managedsave, one after another in one boot, each restored by libvirt before
the next save (:mod:`miglab.qemu.libvirt_saves`, cached).  Every image is read, written back
byte-exact, libvirt's own restore of it is judged by the heartbeat, and an edited one is
restored by the same libvirt.  (With QEMU 11.1 instead, libvirt 11.3 cannot restore a raw
image: QEMU >= 11.0 refuses ``fd:`` migration from a regular file, QEMU commit "migration:
Remove fd: support on files", and libvirt 11.3 hands QEMU the image's fd.)
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

import pytest

import miglab
from miglab.containers import container_name
from miglab.containers.libvirt import SaveFormat
from miglab.qemu.libvirt_saves import LIBVIRTS, SavedImage, restore, saved_by_libvirt
from tests.helpers import ROOT

CHROOT = ROOT / ".qemu" / "libvirt-11.3" / "root"
FORMATS = LIBVIRTS["11.3"].formats  # raw gzip bzip2 xz lzop zstd sparse, managedsave
#: image -> (container name, header format), as libvirt's qemu_saveimage.h numbers them
KINDS = {
    **{f: (f"libvirt-{f}", SaveFormat[f.upper()]) for f in ("raw", "gzip", "bzip2", "xz", "lzop")},
    "zstd": ("libvirt-zstd", SaveFormat.ZSTD),
    "sparse": ("libvirt-sparse+mapped-ram", SaveFormat.SPARSE),
    "managedsave": ("libvirt-raw", SaveFormat.RAW),
}

pytestmark = [
    pytest.mark.libvirt,
    pytest.mark.qemu,  # and the test guest of issue #8 (scripts/build-guest.sh)
    pytest.mark.xdist_group("libvirt"),  # one libvirtd at a time, images made once
    pytest.mark.skipif(
        os.geteuid() != 0 or not (CHROOT / "usr" / "sbin" / "libvirtd").exists(),
        reason="needs root and the libvirt 11.3 chroot (scripts/setup.sh)",
    ),
]


@pytest.fixture(scope="module")
def saved() -> dict[str, SavedImage]:
    return saved_by_libvirt("11.3")


@functools.cache
def _loaded(image: Path) -> miglab.Stream:
    """One load per image (an xz stream takes seconds to expand): don't edit it."""
    return miglab.load(image)


def test_every_format_is_covered() -> None:
    assert set(KINDS) == set(FORMATS)


@pytest.mark.parametrize("name", FORMATS)
def test_reads_the_header_xml_and_stream(saved: dict[str, SavedImage], name: str) -> None:
    raw = saved[name].image.read_bytes()
    stream = _loaded(saved[name].image)
    info = stream.container
    assert container_name(stream) == KINDS[name][0]
    assert raw[:16] == b"LibvirtQemudSave"
    assert struct.unpack_from("<I", raw, 28)[0] == KINDS[name][1] == info.format
    assert "<name>miglab-guest</name>" in info.xml and info.cookie.startswith("<cookie>")
    assert f"/console-{name}.log'" in info.xml  # the run this image saved wrote that console
    assert stream.machine == info.machine == "pc-q35-7.2"
    names = {s.name for s in stream.sections}
    assert {"0000:00:01.0:00.0/virtio-blk", "serial"} <= names  # the Linux guest, not firmware


@pytest.mark.parametrize("name", FORMATS)
def test_libvirts_restore_of_each_image_survives(saved: dict[str, SavedImage], name: str) -> None:
    """The chain restored every image once; the heartbeat counted on across it."""
    survived, why = saved[name].survived()
    assert survived, why


def test_sparse_image_is_mapped_ram_after_the_header(saved: dict[str, SavedImage]) -> None:
    """libvirt has QEMU write at ``file:PATH,offset=N``: the offsets count from the file start."""
    path = saved["sparse"].image
    info = _loaded(path).container
    blocks = info.inner.blocks
    assert blocks and all(b.header_offset > info.stream_offset for b in blocks)
    assert all(b.pages_offset % (1 << 20) == 0 for b in blocks if b.pages_offset)
    assert path.stat().st_blocks * 512 < path.stat().st_size  # zero pages were never written


@pytest.mark.parametrize("name", FORMATS)
def test_unedited_image_is_written_back_byte_exact(
    saved: dict[str, SavedImage], name: str, tmp_path: Path
) -> None:
    out = miglab.save(_loaded(saved[name].image), tmp_path / "copy.img")
    assert out.read_bytes() == saved[name].image.read_bytes()


@pytest.mark.parametrize("name", ["zstd", "sparse"])
def test_edited_xml_restores_with_virsh(
    saved: dict[str, SavedImage], name: str, tmp_path: Path
) -> None:
    stream = miglab.load(saved[name].image)
    stream.container.xml = stream.container.xml.replace("miglab-guest", "miglab-edited")
    out = miglab.save(stream, tmp_path / "edited.img")
    assert "<name>miglab-edited</name>" in miglab.load(out).container.xml
    assert restore(out, "11.3") == "paused"
