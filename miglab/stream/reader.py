"""Read a QEMU migration stream into the object tree (:func:`load`).

The reader walks the stream once, front to back (QEMU-FORMAT.md 1):
header, configuration block, records until QEMU_VM_EOF, the vmdesc trailer.
Device sections are decoded with the one walker
(:func:`~miglab.vmstate.walk.visit_vmstate`) and a description taken from
the stream's own vmdesc, else from a ``-dump-vmstate`` schema; RAM sections
are indexed in place (:mod:`miglab.stream.ram`); what neither can decode is
kept as an :class:`~miglab.stream.model.Opaque` span, found by QEMU's only
resynchronisation point, the section footer (:mod:`miglab.stream.resync`).  Records are
framed by :mod:`miglab.stream.framing`, as everywhere else.

Sections written by hand-made (non-VMState) savevm handlers have a vmdesc
entry without a description (``vmstate_save_old_style``: only a ``data``
buffer and its size).  Those with a model in ``LEGACY_SECTIONS`` (libslirp's
``slirp``; :mod:`miglab.stream.descriptions`) are decoded by it; any other, or one
its model cannot read, is an ``Opaque`` span that says why, never an error.

Files are memory-mapped: page payloads stay views into the mapping.  Every
length read is checked against what remains, so bad input always ends in a
:class:`~miglab.errors.MigrationFormatError` with the offset; an error inside a
section names the section (idstr, id, offset of its header).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Mapping, Sequence

from miglab.errors import (
    FileError,
    LimitExceeded,
    MiglabError,
    MigrationFormatError,
    TruncatedStreamError,
)
from miglab.limits import LIMITS, budget
from miglab.stream.configuration import CONFIGURATION
from miglab.stream.descriptions import LEGACY_SECTIONS, index_vmdesc, legacy_state
from miglab.stream.framing import (
    VMDESC_HEADER_SIZE,
    find_vmdesc,
    idstr_at,
    read_command,
    read_file_header,
    read_full_header,
    read_section_id,
)
from miglab.stream.model import CommandRecord, Opaque, Record, Section, SectionKind, Stream
from miglab.stream.ram import RamContext, read_ram
from miglab.stream.resync import Resync
from miglab.visitors.qemufile import QEMUFileReader
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.layout import paused_gc
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate
from miglab.wire import Command, SectionType

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from miglab.stream.progress import Progress
    from miglab.stream.ram_runs import RecordRuns
    from miglab.vmstate.from_schema import SchemaIndex

__all__ = ("LEGACY_SECTIONS", "PieceReader", "load", "open_source")

_HEADER_KINDS = {
    SectionType.START: SectionKind.START,
    SectionType.PART: SectionKind.PART,
    SectionType.END: SectionKind.END,
    SectionType.FULL: SectionKind.FULL,
}
_BE32 = struct.Struct(">I")


def open_source(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> memoryview:
    """A read-only view of a path (memory-mapped) or of in-memory bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        return view.cast("B") if view.format != "B" else view
    path = os.fspath(source)  # not pathlib: its import would cost every command a few ms
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
    except OSError as exc:
        raise FileError(f"cannot read: {exc.strerror or exc}", path=path, errno=exc.errno) from None


def load(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    schema: str | os.PathLike[str] | Mapping[str, Any] | SchemaIndex | None = None,
    descriptions: Mapping[str, Sequence[VMStateDescription]] | None = None,
    progress: Progress | None = None,
    on_ram_chunk: Callable[[RecordRuns, RamContext], None] | None = None,
) -> Stream:
    """Read a migration stream into a :class:`~miglab.stream.model.Stream`.

    Args:
        source: a file path (memory-mapped) or the stream's bytes.
        schema: a ``-dump-vmstate`` JSON file (or its parsed content, or a
            :class:`~miglab.vmstate.from_schema.SchemaIndex` built with array
            length hints) used to decode device sections when the stream has
            no vmdesc trailer.
        descriptions: section idstr (or its last ``/`` part) -> candidate
            descriptions, e.g. harvested from the vmdesc of another stream of
            the same QEMU build (:mod:`miglab.live.decoding`); tried before the
            schema for sections the stream's own vmdesc does not describe, and
            one is taken only where its decode ends at the section's end.
        progress: told ``("reading", offset, size)`` after each record
            (:mod:`miglab.stream.progress`).
        on_ram_chunk: given each RAM chunk's run entries as they are read
            (:attr:`~miglab.stream.ram_records.RamContext.on_chunk`).

    Raises:
        MigrationFormatError: the bytes are not a valid stream; ``offset``
            says where.  Truncated input raises its subclass
            :class:`~miglab.errors.TruncatedStreamError`.
    """
    view = open_source(source)
    schema_index = None
    if schema is not None:
        from miglab.vmstate.from_schema import SchemaIndex

        schema_index = SchemaIndex.load(schema)
    reader = _Reader(view, schema_index, descriptions)
    reader.progress = progress
    reader.ram.on_chunk = on_ram_chunk
    try:
        # the tree holds no cycles; collections cost half of decode time
        with budget(len(view)), paused_gc():
            return reader.read()
    except MiglabError:
        raise
    except (struct.error, IndexError, KeyError, ValueError, OverflowError, RecursionError) as exc:
        # A safety net: any slip in the reader still surfaces as a format error.
        raise MigrationFormatError(
            f"malformed stream ({type(exc).__name__}: {exc})", offset=reader.r.pos
        ) from None


class PieceReader:
    """Reads a stream that arrives in pieces, one record at a time (the live proxy).

    The same decoding as :func:`load`, without the vmdesc, which a live stream sends last:
    device sections are decoded with ``descriptions`` (harvested per build) and the
    ``schema``, else kept as :class:`~miglab.stream.model.Opaque` spans found by their
    footer.  Each call reads from ``data`` (the bytes received so far, from ``start``)
    and raises :class:`~miglab.errors.TruncatedStreamError` when they end before the
    record does: the caller reads more and calls again with ``final=True`` once the
    source has closed.  RAM sections are the caller's (they are not held in memory);
    :meth:`opened` tells this reader about a START it read itself.
    """

    def __init__(
        self,
        *,
        schema: SchemaIndex | None = None,
        descriptions: Mapping[str, Sequence[VMStateDescription]] | None = None,
    ) -> None:
        self._reader = _Reader(memoryview(b""), schema, descriptions)
        self._reader.sync.piecewise = True

    @property
    def footers(self) -> bool | None:
        """Whether sections carry footers (None until one section was read)."""
        return self._reader.sync.footers

    def _at(self, data: bytes, start: int, final: bool) -> QEMUFileReader:
        reader = self._reader
        reader.view = memoryview(data)
        reader.sync.buf = data
        reader.r = QEMUFileReader(reader.view, start)
        reader.partial = not final
        return reader.r

    def configuration(self, data: bytes, start: int, *, final: bool) -> tuple[VMState, int]:
        """The configuration block at ``start`` (its 0x07 byte) and the offset after it."""
        r = self._at(data, start, final)
        r.u8()
        state = visit_vmstate(QEMUFileInputVisitor(r), CONFIGURATION)
        return state, r.pos

    def record(self, data: bytes, start: int, *, final: bool) -> tuple[Record | None, int]:
        """The record at ``start`` (None for QEMU_VM_EOF) and the offset after it."""
        r = self._at(data, start, final)
        return self._reader.record(r), r.pos

    def opened(self, section: Section) -> None:
        """Record a START section read elsewhere (so its PART/END sections resolve)."""
        self._reader.starts[section.section_id] = section


class _Reader:
    def __init__(
        self,
        view: memoryview,
        schema: Any,
        descriptions: Mapping[str, Sequence[VMStateDescription]] | None = None,
    ) -> None:
        self.view = view
        self.r = QEMUFileReader(view)
        self.schema = schema
        self.candidates = descriptions or {}
        #: The view may end before the stream does (a live stream read in pieces).
        self.partial = False
        # What the vmdesc says of each section (stream.descriptions).
        self.descs: dict[tuple[str, int], VMStateDescription] = {}
        self.legacy: dict[tuple[str, int], list[int | None]] = {}
        self.starts: dict[int, Section] = {}
        self.ram = RamContext()
        self.vmdesc_text: bytes | None = None
        self.progress: Progress | None = None
        obj = view.obj
        # Something with find/rfind and the same offsets as ``view``: the
        # mapping or bytes object itself, copied only for odd buffer types.
        buf: Any = (
            obj
            if isinstance(obj, bytes | bytearray | mmap.mmap) and len(obj) == len(view)
            else bytes(view)
        )
        self.sync = Resync(buf, self.starts)

    def read(self) -> Stream:
        r = self.r
        version = read_file_header(r)
        stream = Stream(version=version, source_size=len(self.view))
        found = find_vmdesc(self.view, self.sync.buf)
        if found is not None:
            at, text, vmdesc = found
            self.sync.vmdesc_at = at
            stream.vmdesc, stream.vmdesc_text = vmdesc, text
            page = vmdesc.get("page_size")
            if isinstance(page, int) and page > 0 and page & (page - 1) == 0 and page >= 512:
                stream.page_size = page
            index = index_vmdesc(vmdesc, at + VMDESC_HEADER_SIZE, text)
            self.descs, self.legacy = index.descs, index.legacy
        if r.peek_u8() == SectionType.CONFIGURATION:
            r.u8()
            stream.configuration = visit_vmstate(QEMUFileInputVisitor(r), CONFIGURATION)
            self._apply_configuration(stream)
        self.ram.page_size = stream.page_size
        stream.ram = self.ram
        stream.records, stream.eof = self._records(r, r.end, depth=0)
        if not stream.eof:
            raise TruncatedStreamError("stream ends before QEMU_VM_EOF", offset=r.pos)
        self._read_trailer(stream)
        return stream

    # --- vmdesc --------------------------------------------------------------
    def _apply_configuration(self, stream: Stream) -> None:
        cfg = stream.configuration
        assert cfg is not None
        bits = cfg.subsections.get("configuration/target-page-bits")
        if bits is not None and stream.vmdesc is None:
            stream.page_size = 1 << min(int(bits.fields["target_page_bits"]), 30)
        caps = cfg.subsections.get("configuration/capabilities")
        if caps is not None:
            names = {c.fields["capability"] for c in caps.fields["capabilities"]}
            self.ram.ignore_shared = "x-ignore-shared" in names
            if "mapped-ram" in names:
                raise MigrationFormatError(
                    "mapped-ram streams (pages at fixed file offsets) are not supported",
                    offset=self.r.pos,
                )

    def _read_trailer(self, stream: Stream) -> None:
        r = self.r
        if r.peek_u8() == SectionType.VMDESCRIPTION:
            at = r.pos
            r.u8()
            n = r.be32("the vmdesc length")
            r.need(n, "the vmdesc JSON")
            if stream.vmdesc is None or self.sync.vmdesc_at != at:
                raise MigrationFormatError("vmdesc trailer is not valid JSON", offset=at)
            r.pos += n
        elif stream.vmdesc is not None:
            # An EOF before the one the vmdesc follows (a flipped type byte): the
            # vmdesc is then part of the trailing bytes, kept verbatim with them.
            stream.vmdesc = None
        stream.trailer = bytes(r.view[r.pos : r.end])
        r.pos = r.end

    # --- records -------------------------------------------------------------
    def _records(self, r: QEMUFileReader, end: int, depth: int) -> tuple[list[Record], bool]:
        records: list[Record] = []
        progress = self.progress if depth == 0 else None
        while r.pos < end:
            if len(records) >= LIMITS.max_sections:
                raise LimitExceeded(f"more than {LIMITS.max_sections} records", offset=r.pos)
            rec = self.record(r, depth)
            if progress is not None:
                progress("reading", r.pos if rec is not None else r.end, r.end)
            if rec is None:
                return records, True
            records.append(rec)
        return records, False

    def record(self, r: QEMUFileReader, depth: int = 0) -> Record | None:
        """The record at ``r.pos`` (None for QEMU_VM_EOF), ``r.pos`` moved past it."""
        at = r.pos
        t = r.u8("a section type")
        if t == SectionType.EOF:
            return None
        kind = _HEADER_KINDS.get(t)  # type: ignore[call-overload]
        if kind is not None:
            return self._section(r, kind, at)
        if t == SectionType.COMMAND:
            return self._command(r, at, depth)
        raise MigrationFormatError(
            f"unknown section type 0x{t:02x}; expected a section (0x01-0x04), "
            "a command (0x08) or EOF (0x00)",
            offset=at,
        )

    def _section(self, r: QEMUFileReader, kind: SectionKind, at: int) -> Section:
        full_header = kind.has_full_header
        try:
            section_id = read_section_id(r)
            if full_header:
                name, instance_id, version_id = read_full_header(r)
        except TruncatedStreamError as exc:
            idstr = idstr_at(r.view, at, r.end)
            named = f"{idstr!r} " if idstr is not None else ""
            raise TruncatedStreamError(
                f"in the header of {kind.value} section {named}at offset {at}: {exc.message}",
                offset=exc.offset,
            ) from None
        if full_header:
            sync = self.sync
            if section_id > sync.top_id:
                sync.top_id = section_id
        else:
            start = self.starts.get(section_id)
            if start is None:
                raise MigrationFormatError(
                    f"{kind.value} section refers to section id {section_id}, which no START opened",
                    offset=at,
                )
            name, instance_id, version_id = start.name, start.instance_id, start.version_id
        try:
            payload_at = r.pos
            if name == "ram" and instance_id == 0:
                if version_id != 4:
                    raise MigrationFormatError(
                        f"RAM section version {version_id}, expected 4", offset=payload_at - 4
                    )
                payload: Any = read_ram(r, self.ram)
            else:
                payload = self._device_payload(r, kind, name, instance_id, version_id, section_id)
            footer = self.sync.footer(r, section_id, name)
        except TruncatedStreamError as exc:
            if self.partial:  # a live stream: the caller retries with more bytes
                raise
            raise TruncatedStreamError(
                f"in {kind.value} section {name!r} (id {section_id}) at offset {at}: {exc.message}",
                offset=exc.offset,
                path=exc.path,
            ) from None
        section = Section(
            kind, section_id, name, instance_id, version_id, payload, footer, at, r.pos - at
        )
        if kind is SectionKind.START:
            self.starts[section_id] = section
        return section

    def _device_payload(
        self,
        r: QEMUFileReader,
        kind: SectionKind,
        name: str,
        instance_id: int,
        version_id: int,
        section_id: int,
    ) -> Any:
        full = kind is SectionKind.FULL
        key = (name, instance_id)
        if full and (key in self.legacy or name in LEGACY_SECTIONS) and key not in self.descs:
            return self._legacy_payload(r, name, instance_id, version_id, section_id)
        desc = self.descs.get((name, instance_id)) if full else None
        if desc is not None:
            if desc.version_id != version_id:
                raise MigrationFormatError(
                    f"section {name!r} has version {version_id} but the vmdesc says {desc.version_id}",
                    offset=r.pos - 4,
                )
            return visit_vmstate(QEMUFileInputVisitor(r), desc, None, version_id, name)
        candidates = self.candidates.get(name) or self.candidates.get(name.rsplit("/", 1)[-1])
        if full and candidates:
            decoded = self._candidate_payload(r, candidates, name, version_id, section_id)
            if decoded is not None:
                return decoded
        if kind is SectionKind.FULL and self.schema is not None:
            decoded = self.schema.decode(r, name, version_id, self.sync.at_boundary(section_id))
            if decoded is not None:
                return decoded
        reason = (
            f"no description for {kind.value} section {name!r}"
            if kind is SectionKind.FULL
            else f"iterative section {name!r} has a private format"
        )
        return Opaque(self._opaque_span(r, section_id), reason)

    def _candidate_payload(
        self,
        r: QEMUFileReader,
        candidates: Sequence[VMStateDescription],
        name: str,
        version_id: int,
        section_id: int,
    ) -> VMState | None:
        """The first candidate description whose decode ends at the section's end, or None."""
        start, ok = r.pos, self.sync.at_boundary(section_id)
        for desc in candidates:
            if desc.version_id != version_id:
                continue
            try:
                state = visit_vmstate(QEMUFileInputVisitor(r), desc, None, version_id, name)
            except TruncatedStreamError:
                if self.partial:  # a live stream: the caller retries with more bytes
                    raise
                state = None
            except MiglabError:
                state = None
            if state is not None and ok(r):
                return state
            r.pos = start
        return None

    def _legacy_payload(
        self, r: QEMUFileReader, name: str, instance_id: int, version_id: int, section_id: int
    ) -> VMState | Opaque:
        """A legacy handler's section: decoded by its model, else kept opaque."""
        start = r.pos
        sizes = self.legacy.get((name, instance_id))
        size = sizes.pop(0) if sizes else None
        # The vmdesc's size where a record boundary confirms it, else the footer scan.
        if size is not None and self.sync.sized_end(r, section_id, size):
            span = r.view[start : r.pos]
        else:
            span = self._opaque_span(r, section_id)
        return legacy_state(r.view, start, span, name, version_id)

    def _opaque_span(self, r: QEMUFileReader, section_id: int) -> memoryview:
        """The bytes up to the section's footer (or, without footers, the next record)."""
        start = r.pos
        self.sync.payload_end(r, section_id)
        return r.view[start : r.pos]

    def _command(self, r: QEMUFileReader, at: int, depth: int) -> CommandRecord:
        known, data = read_command(r)
        packaged = None
        if known is Command.PACKAGED:
            if depth >= LIMITS.max_packaged_depth:
                raise LimitExceeded("PACKAGED commands nested too deeply", offset=at)
            (blob,) = _BE32.unpack(data)
            r.need(blob, "the PACKAGED blob")
            end = r.pos + blob
            inner = QEMUFileReader(r.view, r.pos, end)
            packaged, saw_eof = self._records(inner, end, depth + 1)
            if saw_eof or inner.pos != end:
                raise MigrationFormatError(
                    "PACKAGED blob does not end with its last record", offset=inner.pos
                )
            r.pos = end
        return CommandRecord(int(known), data, packaged, at, r.pos - at)
