"""``sized``: QEMU's records with a length before every section payload.

QEMU's stream cannot be skimmed: a section's end is only known to code that
understands the section (QEMU-FORMAT.md 1.5), so one unknown device stops a
reader.  ``sized`` is QEMU's stream with the one thing missing added — each
payload's length — so a reader can skip what it does not know and index a
stream without decoding it.  Everything else is QEMU's bytes, so converting
to and from ``legacy`` is a copy with lengths added or removed.

Layout (all integers big-endian)::

    "MLSZ"  be32 1                       miglab sized stream, format version 1
    "QEVM"  be32 3                       QEMU's header, unchanged
    0x07 be32 LEN <configuration>        configuration block, now sized
    0x01|0x04 be32 id  u8 n idstr  be32 instance  be32 version  be32 LEN <payload> [0x7e be32 id]
    0x02|0x03 be32 id  be32 LEN <payload> [0x7e be32 id]
    0x08 be16 cmd  be16 len <data>       commands unchanged; a PACKAGED blob holds
                                         sized records and its be32 counts them
    0x00                                 EOF
    0x06 be32 len <vmdesc JSON>          unchanged, then the trailer bytes verbatim

A footer is present when the byte after the payload is 0x7e (no record type
is 0x7e).  Decoding removes the lengths and reads the result as QEMU's
stream, so it needs what ``legacy`` needs (the vmdesc, or the data kept
opaque) and is exactly as lossless.
"""

from __future__ import annotations

from miglab.errors import LimitExceeded, MigrationFormatError, TruncatedStreamError
from miglab.limits import LIMITS
from miglab.stream.configuration import CONFIGURATION
from miglab.stream.framing import (
    FILE_HEADER_SIZE,
    FOOTER_SIZE,
    SECTION_TYPES,
    read_command,
    read_full_header,
    read_section_id,
    write_command,
    write_eof,
    write_file_header,
    write_packaged,
    write_section_header,
    write_vmdesc,
)
from miglab.stream.model import Section, Stream
from miglab.stream.reader import load
from miglab.stream.writer import write_payload, write_records
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
from miglab.vmstate.walk import visit_vmstate
from miglab.wire import Command, SectionType

__all__ = ("MAGIC", "NAME", "VERSION", "decode", "encode", "sniff", "to_legacy")

NAME = "sized"
MAGIC = b"MLSZ"
VERSION = 1


# --- encoding ------------------------------------------------------------------


def encode(stream: Stream) -> bytes:
    """The sized stream for ``stream``: the legacy writer's records, payloads sized."""
    w = QEMUFileWriter()
    w.write(MAGIC)
    w.be32(VERSION)
    write_file_header(w, stream.version)
    if stream.configuration is not None:
        inner = QEMUFileWriter()
        visit_vmstate(QEMUFileOutputVisitor(inner), CONFIGURATION, stream.configuration)
        w.u8(SectionType.CONFIGURATION)
        _sized(w, inner.getvalue())
    write_records(stream.records, w, _sized_payload)
    if stream.eof:
        write_eof(w)
    if stream.vmdesc is not None:
        write_vmdesc(w, stream.vmdesc_json())  # already "be32 len, JSON"
    w.write(stream.trailer)
    return w.getvalue()


def _sized(w: QEMUFileWriter, body: bytes | memoryview) -> None:
    w.be32(len(body))
    w.write(body)


def _sized_payload(w: QEMUFileWriter, s: Section) -> None:
    inner = QEMUFileWriter()
    write_payload(inner, s)
    _sized(w, inner.getvalue())


# --- decoding ------------------------------------------------------------------


def decode(data: bytes) -> Stream:
    """Read a sized stream into the object tree (via QEMU's stream)."""
    return load(to_legacy(data))


def to_legacy(data: bytes) -> bytes:
    """QEMU's stream inside a sized stream: the same bytes without the lengths.

    Raises:
        MigrationFormatError: not a sized stream, or a length overruns the input.
    """
    r = QEMUFileReader(data)
    if bytes(r.read_bytes(4, "the sized magic")) != MAGIC:
        raise MigrationFormatError(f"not a sized stream: magic is not {MAGIC!r}", offset=0)
    version = r.be32("the sized format version")
    if version != VERSION:
        raise MigrationFormatError(f"sized format version {version}, expected {VERSION}", offset=4)
    w = QEMUFileWriter()
    w.write(r.read_bytes(FILE_HEADER_SIZE, "QEMU's header"))
    if r.peek_u8() == SectionType.CONFIGURATION:
        w.u8(r.u8())
        w.write(_take_sized(r, "the configuration block"))
    _copy_records(r, w, r.end, 0)
    if r.peek_u8() == SectionType.VMDESCRIPTION:
        r.u8()
        write_vmdesc(w, _take_sized(r, "the vmdesc"))
    w.write(r.view[r.pos : r.end])
    return w.getvalue()


def _take_sized(r: QEMUFileReader, what: str) -> memoryview:
    n = r.be32(f"the length of {what}")
    return r.view_bytes(n, what)


def _copy_records(r: QEMUFileReader, w: QEMUFileWriter, end: int, depth: int) -> None:
    count = 0
    while r.pos < end:
        count += 1
        if count > LIMITS.max_sections:
            raise LimitExceeded(f"more than {LIMITS.max_sections} records", offset=r.pos)
        at = r.pos
        t = r.u8("a record type")
        if t == SectionType.EOF:
            write_eof(w)
            return
        if t in SECTION_TYPES:
            sid = read_section_id(r)
            if t in (SectionType.START, SectionType.FULL):
                write_section_header(w, t, sid, *read_full_header(r))
            else:
                write_section_header(w, t, sid)
            w.write(_take_sized(r, "a section payload"))
            if r.pos < end and r.peek_u8() == SectionType.FOOTER:
                w.write(r.read_bytes(FOOTER_SIZE, "a section footer"))
        elif t == SectionType.COMMAND:
            cmd, data = read_command(r)
            if cmd is not Command.PACKAGED:
                write_command(w, cmd, data)
                continue
            if depth >= LIMITS.max_packaged_depth:
                raise LimitExceeded("PACKAGED commands nested too deeply", offset=at)
            n = int.from_bytes(data, "big")
            r.need(n, "the PACKAGED blob")
            inner = QEMUFileWriter()
            stop = r.pos + n
            _copy_records(r, inner, stop, depth + 1)
            if r.pos != stop:
                raise MigrationFormatError(
                    "PACKAGED blob does not end with its last record", offset=r.pos
                )
            write_packaged(w, inner.getvalue())
        else:
            raise MigrationFormatError(
                f"unknown record type 0x{t:02x} in a sized stream", offset=at
            )
    if depth == 0:
        raise TruncatedStreamError("sized stream ends before QEMU_VM_EOF", offset=r.pos)


def sniff(data: bytes) -> bool:
    """True when ``data`` starts with the sized magic."""
    return bytes(data[:4]) == MAGIC
