"""Write the object tree back as a legacy QEMU stream.

The mirror of :mod:`miglab.stream.reader`: device states go through the one
walker with a :class:`~miglab.visitors.QEMUFileOutputVisitor`, RAM records
are written from their index, opaque spans verbatim.  For a tree that was
loaded and not edited the result is the input, byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from miglab.errors import MigrationFormatError
from miglab.files import atomic_output
from miglab.stream.configuration import CONFIGURATION
from miglab.stream.constants import FILE_MAGIC, SectionType
from miglab.stream.model import CommandRecord, Opaque, Record, Section, Stream
from miglab.stream.ram import RamPayload, write_ram
from miglab.visitors.qemufile import QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("save", "stream_to_bytes", "write_stream")


def stream_to_bytes(stream: Stream) -> bytes:
    """The legacy stream as bytes."""
    w = QEMUFileWriter()
    write_stream(stream, w)
    return w.getvalue()


def save(stream: Stream, path: str | os.PathLike[str]) -> Path:
    """Write the legacy stream to ``path`` (streamed, not built in memory), atomically
    (:func:`miglab.files.atomic_output`)."""
    out = Path(path)
    with atomic_output(out, input_bytes=stream.source_size or None) as fh:
        write_to(stream, fh)
    return out


def write_to(stream: Stream, fh: BinaryIO) -> None:
    """Write the legacy stream to an open binary file."""
    w = QEMUFileWriter(fh)
    write_stream(stream, w)
    w.flush()


def write_stream(stream: Stream, w: QEMUFileWriter) -> None:
    """Write header, configuration, records, EOF, vmdesc and trailer to ``w``."""
    w.be32(FILE_MAGIC)
    w.be32(stream.version)
    if stream.configuration is not None:
        w.u8(SectionType.CONFIGURATION)
        visit_vmstate(QEMUFileOutputVisitor(w), CONFIGURATION, stream.configuration)
    write_records(stream.records, w)
    if stream.eof:
        w.u8(SectionType.EOF)
    if stream.vmdesc is not None:
        body = stream.vmdesc_json()
        w.u8(SectionType.VMDESCRIPTION)
        w.be32(len(body))
        w.write(body)
    w.write(stream.trailer)


def write_records(records: list[Record], w: QEMUFileWriter) -> None:
    """Write section and command records in order."""
    for rec in records:
        if isinstance(rec, Section):
            _write_section(rec, w)
        else:
            _write_command(rec, w)


def _write_section(s: Section, w: QEMUFileWriter) -> None:
    w.u8(s.kind.type_byte)
    w.be32(s.section_id)
    if s.kind.has_full_header:
        w.counted_string(s.name.encode("utf-8", "surrogateescape"))
        w.be32(s.instance_id)
        w.be32(s.version_id)
    p = s.payload
    if isinstance(p, VMState):
        visit_vmstate(QEMUFileOutputVisitor(w), p.desc, p, s.version_id, s.name)
    elif isinstance(p, RamPayload):
        write_ram(w, p)
    elif isinstance(p, Opaque):
        w.write(p.data)
    else:
        raise MigrationFormatError(
            f"section {s.name!r} has a payload of unknown type {type(p).__name__}"
        )
    if s.footer:
        w.u8(SectionType.FOOTER)
        w.be32(s.section_id)


def _write_command(c: CommandRecord, w: QEMUFileWriter) -> None:
    w.u8(SectionType.COMMAND)
    w.be16(c.command)
    if c.packaged is not None:
        inner = QEMUFileWriter()
        write_records(c.packaged, inner)
        blob = inner.getvalue()
        w.be16(4)
        w.be32(len(blob))
        w.write(blob)
        return
    w.be16(len(c.data))
    w.write(c.data)
