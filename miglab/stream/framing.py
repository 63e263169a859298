"""The record layer of QEMU's stream, declared once: how records are framed, both ways.

A migration stream is a file header, an optional configuration block, then records until
QEMU_VM_EOF, then the vmdesc trailer (QEMU-FORMAT.md 1.1).  This module is the one place
that knows how those records are put on the wire and taken off it; the reader, the
writer, the ``sized`` format, the synthetic generator and the live pump all frame
records with it (integers big-endian; the numbers are QEMU-FORMAT.md's)::

    file header          be32 0x5145564d ("QEVM")  be32 3                           1.1
    configuration        u8 0x07, then the ``configuration`` VMState                1.4
    section START/FULL   u8 0x01|0x04  be32 id  u8 n idstr  be32 inst  be32 ver     1.2
    section PART/END     u8 0x02|0x03  be32 id                                      1.2
    footer               u8 0x7e  be32 id (of the section it closes)                1.3
    command              u8 0x08  be16 cmd  be16 len  data                          1.5
    PACKAGED blob        a PACKAGED command (data: be32 n), then n bytes            1.5
    EOF                  u8 0x00                                                    1.1
    vmdesc trailer       u8 0x06  be32 n, then n bytes of JSON                      1.8

Payloads are not this module's business (device state goes through the one walk, RAM
through :mod:`miglab.stream.ram`); where an undecoded one ends is
:mod:`miglab.stream.resync`'s.

Every read is checked against what remains, so bad input ends in a
:class:`~miglab.errors.MigrationFormatError` (a short one in its subclass
:class:`~miglab.errors.TruncatedStreamError`) with the byte offset.
"""

from __future__ import annotations

import json
import struct

from miglab.errors import LimitExceeded, MigrationFormatError
from miglab.limits import LIMITS
from miglab.stream.configuration import CONFIGURATION
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate
from miglab.wire import (
    COMMAND_LENGTHS,
    FILE_MAGIC,
    FILE_VERSION,
    FILE_VERSION_COMPAT,
    Command,
    SectionType,
)

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = (
    "FILE_HEADER_SIZE",
    "FOOTER_SIZE",
    "SECTION_TYPES",
    "VMDESC_HEADER_SIZE",
    "find_vmdesc",
    "idstr_at",
    "read_command",
    "read_file_header",
    "read_full_header",
    "read_section_id",
    "write_command",
    "write_configuration",
    "write_eof",
    "write_file_header",
    "write_footer",
    "write_packaged",
    "write_section_header",
    "write_vmdesc",
)

#: Magic and version.
FILE_HEADER_SIZE = 8
#: ``0x7e`` and the section id.
FOOTER_SIZE = 5
#: ``0x06`` and the JSON's length.
VMDESC_HEADER_SIZE = 5
_VMDESC_MARK = bytes((SectionType.VMDESCRIPTION,))
#: The four section record types (QEMU_VM_SECTION_START/PART/END/FULL).
SECTION_TYPES = frozenset((SectionType.START, SectionType.PART, SectionType.END, SectionType.FULL))

_BE32 = struct.Struct(">I")
_IDS = struct.Struct(">II")
_FULL_HEADER = (SectionType.START, SectionType.FULL)


# --- the file header -------------------------------------------------------------


def read_file_header(r: QEMUFileReader) -> int:
    """Check the magic and version at ``r.pos`` (the start of a stream); the version."""
    magic = r.be32("the file magic")
    if magic != FILE_MAGIC:
        raise MigrationFormatError(
            f"file magic is 0x{magic:08x}, expected 0x{FILE_MAGIC:08x} ('QEVM')", offset=r.pos - 4
        )
    version = r.be32("the file version")
    if version == FILE_VERSION_COMPAT:
        raise MigrationFormatError(
            "SaveVM v2 format is obsolete (file version 2)", offset=r.pos - 4
        )
    if version != FILE_VERSION:
        raise MigrationFormatError(f"file version is {version}, expected 3", offset=r.pos - 4)
    return version


def write_file_header(w: QEMUFileWriter, version: int = FILE_VERSION) -> None:
    """QEMU_VM_FILE_MAGIC and the file version."""
    w.be32(FILE_MAGIC)
    w.be32(version)


def write_configuration(w: QEMUFileWriter, state: VMState) -> None:
    """The configuration block: its type byte and the ``configuration`` VMState."""
    w.u8(SectionType.CONFIGURATION)
    visit_vmstate(QEMUFileOutputVisitor(w), CONFIGURATION, state)


# --- sections ----------------------------------------------------------------------


def read_section_id(r: QEMUFileReader) -> int:
    """The section id after a section's type byte (all a PART/END header holds)."""
    return r.be32("a section id")


def read_full_header(r: QEMUFileReader) -> tuple[str, int, int]:
    """Idstr, instance id and version id: the rest of a START/FULL header after its id.

    The idstr is decoded as UTF-8 with ``surrogateescape``, so any byte string
    survives a round trip through :func:`write_section_header`.
    """
    name = r.counted_string("a section idstr").decode("utf-8", "surrogateescape")
    instance_id = r.be32("an instance id")
    version_id = r.be32("a version id")
    return name, instance_id, version_id


def idstr_at(v: memoryview, at: int, end: int) -> str | None:
    """The idstr of the START/FULL header at ``at`` if all of it is before ``end``
    (to name a section whose header was cut short)."""
    if at + 6 > end or v[at] not in _FULL_HEADER:
        return None
    q = at + 6 + v[at + 5]
    return bytes(v[at + 6 : q]).decode("utf-8", "surrogateescape") if q <= end else None


def write_section_header(
    w: QEMUFileWriter,
    section_type: int,
    section_id: int,
    name: str = "",
    instance_id: int = 0,
    version_id: int = 0,
) -> None:
    """A section header; ``name``, ``instance_id`` and ``version_id`` only for START/FULL."""
    w.u8(section_type)
    w.be32(section_id)
    if section_type in _FULL_HEADER:
        w.counted_string(name.encode("utf-8", "surrogateescape"))
        w.be32(instance_id)
        w.be32(version_id)


def write_footer(w: QEMUFileWriter, section_id: int) -> None:
    """QEMU_VM_SECTION_FOOTER and the id of the section it closes."""
    w.u8(SectionType.FOOTER)
    w.be32(section_id)


# --- commands, EOF, the vmdesc trailer -----------------------------------------------


def read_command(r: QEMUFileReader) -> tuple[Command, bytes]:
    """The command and its data after a QEMU_VM_COMMAND byte, checked as QEMU checks them.

    A PACKAGED command's data is the be32 length of the blob that follows it (not read).
    """
    at = r.pos
    cmd = r.be16("a command number")
    length = r.be16("a command length")
    try:
        known: Command | None = Command(cmd)
    except ValueError:
        known = None
    if known is None or known is Command.INVALID:
        raise MigrationFormatError(f"MIG_CMD 0x{cmd:x} unknown (len 0x{length:x})", offset=at)
    expected = COMMAND_LENGTHS.get(known)
    if expected is not None and length not in expected:
        raise MigrationFormatError(
            f"{known.name} received with bad length - expecting {expected[-1]}, got {length}",
            offset=at + 2,
        )
    return known, r.read_bytes(length, f"the data of {known.name}")


def write_command(w: QEMUFileWriter, command: int, data: bytes | memoryview = b"") -> None:
    """A command record: type byte, number, length, data."""
    w.u8(SectionType.COMMAND)
    w.be16(command)
    w.be16(len(data))
    w.write(data)


def write_packaged(w: QEMUFileWriter, blob: bytes | memoryview) -> None:
    """A PACKAGED command and the blob of records it carries."""
    write_command(w, Command.PACKAGED, _BE32.pack(len(blob)))
    w.write(blob)


def write_eof(w: QEMUFileWriter) -> None:
    """QEMU_VM_EOF."""
    w.u8(SectionType.EOF)


def write_vmdesc(w: QEMUFileWriter, body: bytes | memoryview) -> None:
    """The vmdesc trailer: type byte, length, JSON text."""
    w.u8(SectionType.VMDESCRIPTION)
    w.be32(len(body))
    w.write(body)


def find_vmdesc(view: memoryview, buf: Any) -> tuple[int, bytes, dict[str, Any]] | None:
    """Locate the JSON trailer from the end: ``00 06 be32 len json``.

    JSON text never holds a raw 0x06 byte, so the trailer's marker is the last 0x06
    before the JSON; a few candidates are tried in case trailing bytes hold one too.
    ``buf`` has ``rfind`` and the offsets of ``view`` (the mapping or bytes itself).
    Returns where the trailer's type byte is, its JSON text and that text parsed, or
    None when the stream has none.
    """
    end = len(view)
    low = max(FILE_HEADER_SIZE, end - LIMITS.max_vmdesc_bytes - 6)
    hi = end
    for _ in range(4):
        p = buf.rfind(_VMDESC_MARK, low, hi)
        if p < 0:
            return None
        hi = p
        if p + VMDESC_HEADER_SIZE > end or view[p - 1] != SectionType.EOF:
            continue
        (n,) = _BE32.unpack_from(view, p + 1)
        body = p + VMDESC_HEADER_SIZE
        if body + n > end or n < 2 or view[body] != ord("{"):
            continue
        if n > LIMITS.max_vmdesc_bytes:
            raise LimitExceeded(
                f"vmdesc of {n} bytes exceeds the limit of {LIMITS.max_vmdesc_bytes}",
                offset=p + 1,
            )
        text = bytes(view[body : body + n])
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("devices"), list):
            return p, text, parsed
    return None
