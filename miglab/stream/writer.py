"""Write the object tree back as a legacy QEMU stream.

The mirror of :mod:`miglab.stream.reader`: records are framed by
:mod:`miglab.stream.framing`, device states go through the one walker with a
:class:`~miglab.visitors.QEMUFileOutputVisitor`, RAM records are written from
their index, opaque spans verbatim.  For a tree that was loaded and not edited
the result is the input, byte for byte.

The writer sits below :mod:`miglab.stream.model` (whose ``Stream.to_bytes`` it
serves): it needs only the records (:mod:`miglab.stream.records`) and the parts
of a stream named by :class:`WritableStream`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from miglab.errors import MigrationFormatError
from miglab.files import atomic_output
from miglab.stream.framing import (
    write_command,
    write_configuration,
    write_eof,
    write_file_header,
    write_footer,
    write_packaged,
    write_section_header,
    write_vmdesc,
)
from miglab.stream.ram import RamPayload, write_ram
from miglab.stream.records import Opaque, Record, Section
from miglab.visitors.qemufile import QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

if TYPE_CHECKING:
    from miglab.stream.progress import Progress

__all__ = (
    "PayloadWriter",
    "WritableStream",
    "save",
    "stream_to_bytes",
    "write_payload",
    "write_records",
    "write_stream",
    "write_to",
)


class WritableStream(Protocol):
    """What the writer reads of a stream; a :class:`~miglab.stream.model.Stream` has it."""

    @property
    def version(self) -> int: ...
    @property
    def configuration(self) -> VMState | None: ...
    @property
    def records(self) -> list[Record]: ...
    @property
    def eof(self) -> bool: ...
    @property
    def vmdesc(self) -> dict[str, Any] | None: ...
    @property
    def trailer(self) -> bytes: ...
    @property
    def source_size(self) -> int: ...
    def vmdesc_json(self) -> bytes: ...


#: Writes a section's payload (QEMU's own writes it as it is; ``sized`` adds a length).
PayloadWriter = Callable[[QEMUFileWriter, Section], None]


def stream_to_bytes(stream: WritableStream) -> bytes:
    """The legacy stream as bytes."""
    w = QEMUFileWriter()
    write_stream(stream, w)
    return w.getvalue()


def save(
    stream: WritableStream, path: str | os.PathLike[str], *, progress: Progress | None = None
) -> Path:
    """Write the legacy stream to ``path`` (streamed, not built in memory), atomically
    (:func:`miglab.files.atomic_output`); ``progress`` as for :func:`write_stream`."""
    out = Path(path)
    with atomic_output(out, input_bytes=stream.source_size or None) as fh:
        write_to(stream, fh, progress=progress)
    return out


def write_to(stream: WritableStream, fh: BinaryIO, *, progress: Progress | None = None) -> None:
    """Write the legacy stream to an open binary file; ``progress`` as for :func:`write_stream`."""
    w = QEMUFileWriter(fh)
    write_stream(stream, w, progress=progress)
    w.flush()


def write_stream(
    stream: WritableStream, w: QEMUFileWriter, *, progress: Progress | None = None
) -> None:
    """Write header, configuration, records, EOF, vmdesc and trailer to ``w``.

    ``progress`` is told ``("writing", end, source size)`` after each record read from
    the input, ``end`` being where that record ended there (:mod:`miglab.stream.progress`).
    """
    write_file_header(w, stream.version)
    if stream.configuration is not None:
        write_configuration(w, stream.configuration)
    if progress is None:
        write_records(stream.records, w)
    else:
        total = stream.source_size
        for rec in stream.records:  # a record at a time, to say how far
            write_records((rec,), w)
            if rec.offset >= 0:  # a record built in memory has no place in the input
                progress("writing", min(rec.offset + rec.size, total), total)
        progress("writing", total, total)
    if stream.eof:
        write_eof(w)
    if stream.vmdesc is not None:
        write_vmdesc(w, stream.vmdesc_json())
    w.write(stream.trailer)


def write_records(
    records: Iterable[Record], w: QEMUFileWriter, payload: PayloadWriter | None = None
) -> None:
    """Write section and command records in order, each payload with ``payload``
    (default :func:`write_payload`), also inside PACKAGED blobs."""
    put = write_payload if payload is None else payload
    for rec in records:
        if isinstance(rec, Section):
            write_section_header(
                w, rec.kind.type_byte, rec.section_id, rec.name, rec.instance_id, rec.version_id
            )
            put(w, rec)
            if rec.footer:
                write_footer(w, rec.section_id)
        elif rec.packaged is not None:
            inner = QEMUFileWriter()
            write_records(rec.packaged, inner, put)
            write_packaged(w, inner.getvalue())
        else:
            write_command(w, rec.command, rec.data)


def write_payload(w: QEMUFileWriter, s: Section) -> None:
    """A section's payload as QEMU writes it: device state, RAM records or opaque bytes."""
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
