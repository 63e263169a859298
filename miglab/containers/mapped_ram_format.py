"""The mapped-ram file layout: QEMU >= 9.0 ``file:`` migration with pages at fixed offsets.

With the ``mapped-ram`` capability (``docs/devel/migration/mapped-ram.rst``,
``migration/ram.c``: ``mapped_ram_setup_ramblock``, ``ram_save_file_bmap``,
``parse_ramblock_mapped_ram``) the RAM section's block list carries, after
each block's ``used_length``, a packed big-endian header::

    be32 version (1)   be64 page_size   be64 bitmap_offset   be64 pages_offset

``bitmap_offset`` is right after that header; the bitmap (one bit per page,
the host's ``unsigned long`` array, little-endian on x86-64) is written
there when the migration completes; ``pages_offset`` is the next 1 MiB
boundary after the bitmap; page *n* of the block lives at ``pages_offset +
n * page_size`` and zero pages are not written at all (the file is sparse).
The sequential stream resumes at ``pages_offset + used_length``.  Offsets
are absolute file positions, including anything before the stream (a
libvirt header: :mod:`miglab.containers.libvirt`).

This module declares the layout once (constants, :class:`MappedBlock`) and the
configuration's capability list; :mod:`~miglab.containers.mapped_ram_read` reads a
file's page areas, :mod:`~miglab.containers.mapped_ram_write` writes them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from miglab.stream.configuration import CONFIGURATION
from miglab.vmstate.state import VMState
from miglab.wire import FILE_MAGIC, RamFlag, SectionType

__all__ = (
    "ALIGNMENT",
    "CAPABILITY",
    "HEADER",
    "HEADER_VERSION",
    "MappedBlock",
    "add_capability",
    "bitmap_size",
    "capabilities",
    "drop_capability",
    "sniff",
)

CAPABILITY = "mapped-ram"
HEADER_VERSION = 1
ALIGNMENT = 0x100000  # MAPPED_RAM_FILE_OFFSET_ALIGNMENT
HEADER = struct.Struct(">IQQQ")
_LONG = 8  # sizeof(unsigned long) on the 64-bit hosts QEMU writes these files on
_CAPS = "configuration/capabilities"
NOT_PAGES = int(RamFlag.XBZRLE | RamFlag.COMPRESS_PAGE)


def sniff(view: memoryview) -> bool:
    """Whether ``view`` is a stream whose configuration enables mapped-ram."""
    head = bytes(view[:512])
    return (
        head[:4] == FILE_MAGIC.to_bytes(4, "big")
        and len(head) > 8
        and head[8] == SectionType.CONFIGURATION
        and b"\x0amapped-ram" in head
    )


@dataclass(frozen=True, slots=True)
class MappedBlock:
    """Where one RAM block's pages are in the file.

    Attributes:
        name: the RAMBlock idstr.
        used_length: bytes of the block.
        page_size: the header's page size.
        header_offset: file offset of the mapped-ram header.
        bitmap_offset: file offset of the page bitmap (0: block not in the file).
        pages_offset: file offset of page 0 (0: block not in the file).
        pages: number of pages present (bits set).
    """

    name: str
    used_length: int
    page_size: int
    header_offset: int
    bitmap_offset: int
    pages_offset: int
    pages: int

    @property
    def bitmap_size(self) -> int:
        """``BITS_TO_LONGS(pages) * sizeof(unsigned long)``."""
        return bitmap_size(self.used_length // self.page_size)


def bitmap_size(num_pages: int) -> int:
    """Bytes of the bitmap of a block of ``num_pages`` pages."""
    return -(-num_pages // (8 * _LONG)) * _LONG


def capabilities(config: VMState) -> list[str]:
    caps = config.subsections.get(_CAPS)
    return (
        [] if caps is None else [str(c.fields["capability"]) for c in caps.fields["capabilities"]]
    )


def _with_capabilities(config: VMState, names: list[str]) -> VMState:
    """A copy of ``config`` whose capabilities subsection lists ``names`` (none: absent)."""
    desc = CONFIGURATION.subsection_named(_CAPS)
    assert desc is not None and desc.fields[1].struct is not None
    item = desc.fields[1].struct
    subs: dict[str, VMState] = {}
    for sub in CONFIGURATION.subsections:  # QEMU's order, whatever the dict's was
        if sub.name == _CAPS:
            if names:
                subs[_CAPS] = VMState(
                    desc,
                    1,
                    {
                        "caps_count": len(names),
                        "capabilities": [VMState(item, 1, {"capability": n}) for n in names],
                    },
                )
        elif sub.name in config.subsections:
            subs[sub.name] = config.subsections[sub.name]
    return VMState(config.desc, config.version_id, dict(config.fields), subs)


def drop_capability(config: VMState) -> VMState:
    """``config`` without mapped-ram (what a sequential stream's destination expects)."""
    return _with_capabilities(config, [c for c in capabilities(config) if c != CAPABILITY])


def add_capability(config: VMState) -> VMState:
    """``config`` with mapped-ram (QEMU lists it after x-ignore-shared)."""
    caps = capabilities(config)
    return config if CAPABILITY in caps else _with_capabilities(config, [*caps, CAPABILITY])
