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

import struct

from miglab.errors import LimitExceeded, MigrationFormatError, TruncatedStreamError
from miglab.limits import LIMITS
from miglab.stream.configuration import CONFIGURATION
from miglab.stream.constants import FILE_MAGIC, Command, SectionType
from miglab.stream.model import CommandRecord, Opaque, Record, Section, Stream
from miglab.stream.ram import RamPayload, write_ram
from miglab.stream.reader import load
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("MAGIC", "NAME", "VERSION", "decode", "encode", "sniff", "to_legacy")

NAME = "sized"
MAGIC = b"MLSZ"
VERSION = 1
_BE32 = struct.Struct(">I")
_SECTIONS = (SectionType.START, SectionType.PART, SectionType.END, SectionType.FULL)


# --- encoding ------------------------------------------------------------------


def encode(stream: Stream) -> bytes:
    """The sized stream for ``stream``."""
    w = QEMUFileWriter()
    w.write(MAGIC)
    w.be32(VERSION)
    w.be32(FILE_MAGIC)
    w.be32(stream.version)
    if stream.configuration is not None:
        inner = QEMUFileWriter()
        visit_vmstate(QEMUFileOutputVisitor(inner), CONFIGURATION, stream.configuration)
        w.u8(SectionType.CONFIGURATION)
        _sized(w, inner.getvalue())
    _records(stream.records, w)
    if stream.eof:
        w.u8(SectionType.EOF)
    if stream.vmdesc is not None:
        body = stream.vmdesc_json()
        w.u8(SectionType.VMDESCRIPTION)
        _sized(w, body)
    w.write(stream.trailer)
    return w.getvalue()


def _sized(w: QEMUFileWriter, body: bytes) -> None:
    w.be32(len(body))
    w.write(body)


def _records(records: list[Record], w: QEMUFileWriter) -> None:
    for rec in records:
        if isinstance(rec, CommandRecord):
            w.u8(SectionType.COMMAND)
            w.be16(rec.command)
            if rec.packaged is not None:
                inner = QEMUFileWriter()
                _records(rec.packaged, inner)
                w.be16(4)
                _sized(w, inner.getvalue())
            else:
                w.be16(len(rec.data))
                w.write(rec.data)
            continue
        w.u8(rec.kind.type_byte)
        w.be32(rec.section_id)
        if rec.kind.has_full_header:
            w.counted_string(rec.name.encode("utf-8", "surrogateescape"))
            w.be32(rec.instance_id)
            w.be32(rec.version_id)
        _sized(w, _payload(rec))
        if rec.footer:
            w.u8(SectionType.FOOTER)
            w.be32(rec.section_id)


def _payload(s: Section) -> bytes:
    p = s.payload
    if isinstance(p, Opaque):
        return bytes(p.data)
    inner = QEMUFileWriter()
    if isinstance(p, VMState):
        visit_vmstate(QEMUFileOutputVisitor(inner), p.desc, p, s.version_id, s.name)
    elif isinstance(p, RamPayload):
        write_ram(inner, p)
    else:
        raise MigrationFormatError(
            f"section {s.name!r} has a payload of unknown type {type(p).__name__}"
        )
    return inner.getvalue()


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
    w.write(r.read_bytes(8, "QEMU's header"))
    if r.peek_u8() == SectionType.CONFIGURATION:
        w.u8(r.u8())
        w.write(_take_sized(r, "the configuration block"))
    _copy_records(r, w, r.end, 0)
    if r.peek_u8() == SectionType.VMDESCRIPTION:
        w.u8(r.u8())
        body = _take_sized(r, "the vmdesc")
        w.be32(len(body))
        w.write(body)
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
        w.u8(t)
        if t == SectionType.EOF:
            return
        if t in _SECTIONS:
            sid = r.be32("a section id")
            w.be32(sid)
            if t in (SectionType.START, SectionType.FULL):
                w.counted_string(r.counted_string("a section idstr"))
                w.write(r.read_bytes(8, "instance and version ids"))
            w.write(_take_sized(r, "a section payload"))
            if r.pos < end and r.peek_u8() == SectionType.FOOTER:
                w.write(r.read_bytes(5, "a section footer"))
        elif t == SectionType.COMMAND:
            cmd = r.be16("a command number")
            length = r.be16("a command length")
            w.be16(cmd)
            if cmd == Command.PACKAGED and length == 4:
                if depth >= LIMITS.max_packaged_depth:
                    raise LimitExceeded("PACKAGED commands nested too deeply", offset=at)
                n = r.be32("the PACKAGED length")
                r.need(n, "the PACKAGED blob")
                inner = QEMUFileWriter()
                stop = r.pos + n
                _copy_records(r, inner, stop, depth + 1)
                if r.pos != stop:
                    raise MigrationFormatError(
                        "PACKAGED blob does not end with its last record", offset=r.pos
                    )
                blob = inner.getvalue()
                w.be16(4)
                w.be32(len(blob))
                w.write(blob)
            else:
                w.be16(length)
                w.write(r.read_bytes(length, "command data"))
        else:
            raise MigrationFormatError(
                f"unknown record type 0x{t:02x} in a sized stream", offset=at
            )
    if depth == 0:
        raise TruncatedStreamError("sized stream ends before QEMU_VM_EOF", offset=r.pos)


def sniff(data: bytes) -> bool:
    """True when ``data`` starts with the sized magic."""
    return bytes(data[:4]) == MAGIC
