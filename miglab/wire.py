"""QEMU migration stream constants (migration/savevm.c, migration/ram.c), in one place.

The numbers QEMU puts on the wire -- the file magic and version, the record type bytes
(``QEMU_VM_*``), the in-band commands (``MIG_CMD_*``) and the RAM page flags
(``RAM_SAVE_FLAG_*``) -- are declared here and nowhere else.  The module sits in the
lowest layer, beside :mod:`miglab.errors`, so that the visitors (a subsection's
``QEMU_VM_SUBSECTION`` byte), the device models and the stream framing
(:mod:`miglab.stream.framing`) all read the same declaration.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, IntFlag

__all__ = (
    "COMMAND_LENGTHS",
    "FILE_MAGIC",
    "FILE_VERSION",
    "FILE_VERSION_COMPAT",
    "RAM_COMPRESS_PAGE",
    "RAM_CONTINUE",
    "RAM_EOS",
    "RAM_HOOK",
    "RAM_MEM_SIZE",
    "RAM_MULTIFD_FLUSH",
    "RAM_PAGE",
    "RAM_PAGE_KINDS",
    "RAM_XBZRLE",
    "RAM_ZERO",
    "Command",
    "RamFlag",
    "SectionType",
    "byte_class",
)

FILE_MAGIC = 0x5145564D  # "QEVM"
FILE_VERSION = 3
FILE_VERSION_COMPAT = 2  # "SaveVM v2 format is obsolete and don't work anymore"


class SectionType(IntEnum):
    """Record type bytes of the top-level stream (QEMU_VM_*)."""

    EOF = 0x00
    START = 0x01
    PART = 0x02
    END = 0x03
    FULL = 0x04
    SUBSECTION = 0x05
    VMDESCRIPTION = 0x06
    CONFIGURATION = 0x07
    COMMAND = 0x08
    FOOTER = 0x7E


class Command(IntEnum):
    """In-band commands (``enum qemu_vm_cmd``, MIG_CMD_*)."""

    INVALID = 0
    OPEN_RETURN_PATH = 1
    PING = 2
    POSTCOPY_ADVISE = 3
    POSTCOPY_LISTEN = 4
    POSTCOPY_RUN = 5
    POSTCOPY_RAM_DISCARD = 6
    PACKAGED = 7
    ENABLE_COLO = 8
    POSTCOPY_RESUME = 9
    RECV_BITMAP = 10
    SWITCHOVER_START = 11


# Fixed data lengths QEMU checks ("%s received with bad length"); None = variable.
COMMAND_LENGTHS: dict[Command, tuple[int, ...] | None] = {
    Command.OPEN_RETURN_PATH: (0,),
    Command.PING: (4,),
    Command.POSTCOPY_ADVISE: (0, 16),
    Command.POSTCOPY_LISTEN: (0,),
    Command.POSTCOPY_RUN: (0,),
    Command.POSTCOPY_RAM_DISCARD: None,
    Command.PACKAGED: (4,),
    Command.ENABLE_COLO: (0,),
    Command.POSTCOPY_RESUME: (0,),
    Command.RECV_BITMAP: None,
    Command.SWITCHOVER_START: (0,),
}


class RamFlag(IntFlag):
    """Low bits of a RAM page word (RAM_SAVE_FLAG_*)."""

    FULL = 0x001  # obsolete since 2009, never sent
    ZERO = 0x002  # called COMPRESS in older QEMU
    MEM_SIZE = 0x004
    PAGE = 0x008
    EOS = 0x010
    CONTINUE = 0x020
    XBZRLE = 0x040
    HOOK = 0x080  # RDMA only
    COMPRESS_PAGE = 0x100  # zlib, removed in QEMU 9.1
    MULTIFD_FLUSH = 0x200


# The same flags as plain ints, for the loops that run per page record (IntFlag
# arithmetic costs microseconds there).
RAM_ZERO = int(RamFlag.ZERO)
RAM_MEM_SIZE = int(RamFlag.MEM_SIZE)
RAM_PAGE = int(RamFlag.PAGE)
RAM_EOS = int(RamFlag.EOS)
RAM_CONTINUE = int(RamFlag.CONTINUE)
RAM_XBZRLE = int(RamFlag.XBZRLE)
RAM_HOOK = int(RamFlag.HOOK)
RAM_COMPRESS_PAGE = int(RamFlag.COMPRESS_PAGE)
RAM_MULTIFD_FLUSH = int(RamFlag.MULTIFD_FLUSH)
#: The kinds of record that carry one page (the rest are block lists and markers).
RAM_PAGE_KINDS = RAM_ZERO | RAM_PAGE | RAM_COMPRESS_PAGE | RAM_XBZRLE


def byte_class(values: Iterable[int]) -> bytes:
    """A ``re`` character class of these byte values (``rb"[\\x01\\x04]"``), so that the
    scanners looking for a record start spell its type bytes from this module."""
    return b"[" + b"".join(b"\\x%02x" % v for v in sorted(set(values))) + b"]"
