"""Read a QEMU migration stream into the object tree (:func:`load`).

The reader walks the stream once, front to back (QEMU-FORMAT.md 1):
header, configuration block, records until QEMU_VM_EOF, the vmdesc trailer.
Device sections are decoded with the one walker
(:func:`~miglab.vmstate.walk.visit_vmstate`) and a description taken from
the stream's own vmdesc, else from a ``-dump-vmstate`` schema; RAM sections
are indexed in place (:mod:`miglab.stream.ram`); what neither can decode is
kept as an :class:`~miglab.stream.model.Opaque` span, found by QEMU's only
resynchronisation point, the section footer.

Sections written by hand-made (non-VMState) savevm handlers have a vmdesc
entry without a description (``vmstate_save_old_style``: only a ``data``
buffer and its size).  Those with a model in ``LEGACY_SECTIONS`` (libslirp's
``slirp``) are decoded by it; any other, or one its model cannot read, is an
``Opaque`` span that says why, never an error.

Files are memory-mapped: page payloads stay views into the mapping.  Every
length read is checked against what remains, so bad input always ends in a
:class:`~miglab.errors.MigrationFormatError` with the offset.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miglab.devices.slirp import read_slirp_state
from miglab.errors import (
    DescriptionError,
    FileError,
    LimitExceeded,
    MiglabError,
    MigrationFormatError,
    TruncatedStreamError,
)
from miglab.limits import LIMITS, budget
from miglab.stream.configuration import CONFIGURATION
from miglab.stream.constants import (
    COMMAND_LENGTHS,
    FILE_MAGIC,
    FILE_VERSION,
    FILE_VERSION_COMPAT,
    Command,
    SectionType,
)
from miglab.stream.model import CommandRecord, Opaque, Record, Section, SectionKind, Stream
from miglab.stream.ram import RamContext, read_ram
from miglab.visitors.qemufile import QEMUFileReader
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.from_vmdesc import description_from_vmdesc, require_unicode
from miglab.vmstate.layout import paused_gc
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

if TYPE_CHECKING:
    from miglab.vmstate.from_schema import SchemaIndex

__all__ = ("LEGACY_SECTIONS", "PieceReader", "load", "open_source")

#: idstr -> reader of the payload, for sections saved by legacy handlers.
LEGACY_SECTIONS: Mapping[str, Callable[[QEMUFileReader, int], VMState]] = {
    "slirp": read_slirp_state,
}

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
    path = Path(source)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
    except OSError as exc:
        raise FileError(
            f"cannot read: {exc.strerror or exc}", path=str(path), errno=exc.errno
        ) from None


def load(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    schema: str | os.PathLike[str] | Mapping[str, Any] | SchemaIndex | None = None,
    descriptions: Mapping[str, Sequence[VMStateDescription]] | None = None,
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
        self._reader.piecewise = True

    @property
    def footers(self) -> bool | None:
        """Whether sections carry footers (None until one section was read)."""
        return self._reader.footers

    def _at(self, data: bytes, start: int, final: bool) -> QEMUFileReader:
        reader = self._reader
        reader.view = memoryview(data)
        reader.buf = data
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
        #: Reading a stream in pieces (PieceReader): no vmdesc is known in advance.
        self.piecewise = False
        self.descs: dict[tuple[str, int], VMStateDescription] = {}
        # Sections the vmdesc lists without a description -> the sizes it gives,
        # in stream order (two user-mode networks are both ``slirp`` instance 0).
        self.legacy: dict[tuple[str, int], list[int | None]] = {}
        self.starts: dict[int, Section] = {}
        self.ram = RamContext()
        self.footers: bool | None = None
        self.vmdesc_at: int | None = None
        self.vmdesc_text: bytes | None = None
        # Highest START/FULL section id so far: QEMU numbers sections one by
        # one, so a plausible next header's id is at most a little above it.
        self.top_id = 0
        obj = view.obj
        # Something with find/rfind and the same offsets as ``view``: the
        # mapping or bytes object itself, copied only for odd buffer types.
        self.buf: Any = (
            obj
            if isinstance(obj, bytes | bytearray | mmap.mmap) and len(obj) == len(view)
            else bytes(view)
        )

    def read(self) -> Stream:
        r = self.r
        magic = r.be32("the file magic")
        if magic != FILE_MAGIC:
            raise MigrationFormatError(
                f"file magic is 0x{magic:08x}, expected 0x{FILE_MAGIC:08x} ('QEVM')", offset=0
            )
        version = r.be32("the file version")
        if version == FILE_VERSION_COMPAT:
            raise MigrationFormatError("SaveVM v2 format is obsolete (file version 2)", offset=4)
        if version != FILE_VERSION:
            raise MigrationFormatError(f"file version is {version}, expected 3", offset=4)
        stream = Stream(version=version, source_size=len(self.view))
        vmdesc = self._find_vmdesc()
        if vmdesc is not None:
            stream.vmdesc = vmdesc
            stream.vmdesc_text = self.vmdesc_text
            page = vmdesc.get("page_size")
            if isinstance(page, int) and page > 0 and page & (page - 1) == 0 and page >= 512:
                stream.page_size = page
            self._index_vmdesc(vmdesc)
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
    def _find_vmdesc(self) -> dict[str, Any] | None:
        """Locate the JSON trailer from the end: ``00 06 be32 len json``.

        JSON text never holds a raw 0x06 byte, so the trailer's marker is the
        last 0x06 before the JSON; a few candidates are tried in case trailing
        bytes hold one too.
        """
        view = self.view
        end = len(view)
        low = max(8, end - LIMITS.max_vmdesc_bytes - 6)
        hi = end
        for _ in range(4):
            p = self.buf.rfind(b"\x06", low, hi)
            if p < 0:
                return None
            hi = p
            if p + 5 > end or view[p - 1] != 0:
                continue
            (n,) = _BE32.unpack_from(view, p + 1)
            if p + 5 + n > end or n < 2 or view[p + 5] != ord("{"):
                continue
            if n > LIMITS.max_vmdesc_bytes:
                raise LimitExceeded(
                    f"vmdesc of {n} bytes exceeds the limit of {LIMITS.max_vmdesc_bytes}",
                    offset=p + 1,
                )
            try:
                parsed = json.loads(bytes(view[p + 5 : p + 5 + n]))
            except (ValueError, RecursionError):
                continue
            if isinstance(parsed, dict) and isinstance(parsed.get("devices"), list):
                self.vmdesc_at = p
                self.vmdesc_text = bytes(view[p + 5 : p + 5 + n])
                return parsed
        return None

    def _index_vmdesc(self, vmdesc: dict[str, Any]) -> None:
        try:
            require_unicode(self.vmdesc_text or b"", vmdesc)
            self._index_devices(vmdesc["devices"])
        except (DescriptionError, LimitExceeded) as exc:
            if exc.offset is not None:
                raise
            # The JSON has no byte offsets of its own: name where the vmdesc starts.
            at = self.vmdesc_at + 5 if self.vmdesc_at is not None else None
            raise type(exc)(f"in the vmdesc: {exc.message}", offset=at, path=exc.path) from None

    def _index_devices(self, devices: list[Any]) -> None:
        cache: dict[str, VMStateDescription] = {}
        for i, dev in enumerate(devices):
            if not isinstance(dev, dict):
                raise DescriptionError(f"vmdesc device {i} is not an object")
            name, inst = dev.get("name"), dev.get("instance_id")
            if not isinstance(name, str) or not isinstance(inst, int):
                raise DescriptionError(f"vmdesc device {i} lacks a name or instance_id")
            if "vmsd_name" not in dev:  # vmstate_save_old_style: a legacy handler's bytes
                size = dev.get("size")
                sizes = self.legacy.setdefault((name, inst), [])
                sizes.append(size if isinstance(size, int) else None)
                continue
            self.descs[(name, inst)] = description_from_vmdesc(dev, 0, cache)

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
            if stream.vmdesc is None or self.vmdesc_at != at:
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
        while r.pos < end:
            if len(records) >= LIMITS.max_sections:
                raise LimitExceeded(f"more than {LIMITS.max_sections} records", offset=r.pos)
            rec = self.record(r, depth)
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
        section_id = r.be32("a section id")
        if kind.has_full_header:
            self.top_id = max(self.top_id, section_id)
            name_raw = r.counted_string("a section idstr")
            name = name_raw.decode("utf-8", "surrogateescape")
            instance_id = r.be32("an instance id")
            version_id = r.be32("a version id")
        else:
            start = self.starts.get(section_id)
            if start is None:
                raise MigrationFormatError(
                    f"{kind.value} section refers to section id {section_id}, which no START opened",
                    offset=at,
                )
            name, instance_id, version_id = start.name, start.instance_id, start.version_id
        payload_at = r.pos
        if name == "ram" and instance_id == 0:
            if version_id != 4:
                raise MigrationFormatError(
                    f"RAM section version {version_id}, expected 4", offset=payload_at - 4
                )
            payload: Any = read_ram(r, self.ram)
        else:
            payload = self._device_payload(r, kind, name, instance_id, version_id, section_id)
        footer = self._footer(r, section_id, name)
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
            decoded = self.schema.decode(r, name, version_id, self._boundary_ok(section_id))
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
        start, ok = r.pos, self._boundary_ok(section_id)
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
        span = self._legacy_span(r, section_id, sizes.pop(0) if sizes else None)
        decode = LEGACY_SECTIONS.get(name)
        if decode is None:
            return Opaque(
                span,
                f"section {name!r} is saved by a legacy (non-VMState) savevm handler "
                "and miglab has no model of its format",
            )
        inner = QEMUFileReader(r.view, start, start + len(span))
        try:
            state = decode(inner, version_id)
            if inner.pos != inner.end:
                raise MigrationFormatError(
                    f"{inner.end - inner.pos} bytes left after the {name} state", offset=inner.pos
                )
        except MiglabError as exc:
            return Opaque(span, f"legacy section {name!r} kept undecoded: {exc}")
        return state

    def _legacy_span(self, r: QEMUFileReader, section_id: int, size: int | None) -> memoryview:
        """The payload of a legacy section: the vmdesc's size where a record boundary
        (footer, or next record without footers) confirms it, else the footer scan."""
        start, v = r.pos, r.view
        if size is not None and start + size < r.end:
            p = start + size
            if self.footers is not False and v[p] == SectionType.FOOTER:
                if p + 5 <= r.end and _BE32.unpack_from(v, p + 1)[0] == section_id:
                    r.pos = p
                    return v[start:p]
            elif self.footers is not True and self._plausible(v, p, r.end):
                r.pos = p
                return v[start:p]
        return self._opaque_span(r, section_id)

    def _boundary_ok(self, section_id: int) -> Any:
        """A predicate: does a section payload ending here end at a record boundary?"""

        def ok(r: QEMUFileReader) -> bool:
            p, v = r.pos, r.view
            if p >= r.end:
                return False
            if v[p] == SectionType.FOOTER:
                return p + 5 <= r.end and _BE32.unpack_from(v, p + 1)[0] == section_id
            return self.footers is False and self._plausible(v, p, r.end)

        return ok

    def _opaque_span(self, r: QEMUFileReader, section_id: int) -> memoryview:
        """Bytes up to the section's footer (or, without footers, the next record)."""
        start, v, data = r.pos, r.view, self.buf
        if self.footers is not False:
            needle = bytes([SectionType.FOOTER]) + _BE32.pack(section_id)
            p = data.find(needle, start, r.end)
            while p >= 0 and p + 5 < r.end and not self._plausible(v, p + 5, r.end):
                p = data.find(needle, p + 1, r.end)
            if p >= 0:
                r.pos = p
                return v[start:p]
        if self.footers is not True:
            # EOF is plausible at one place only, so the scan looks for record types
            # (not every 0x00 byte) and checks that place when it passes it.
            eof = (self.vmdesc_at if self.vmdesc_at is not None else r.end) - 1
            if self.piecewise:  # the first EOF byte the vmdesc's header follows
                found = _EOF_VMDESC.search(data, start + 1, r.end)
                eof = found.start() if found is not None else eof
            for m in _HEADER_RE.finditer(data, start + 1, r.end):
                p = m.start()
                if start < eof < p and v[eof] == SectionType.EOF:
                    p = eof
                elif not self._plausible(v, p, r.end):
                    continue
                r.pos = p
                return v[start:p]
            if start < eof < r.end and v[eof] == SectionType.EOF:
                r.pos = eof
                return v[start:eof]
        if self.vmdesc_at is None:
            # No vmdesc at the end and no footer or next record to be found:
            # the input was cut short.
            raise TruncatedStreamError(
                f"stream ends inside the undescribed section whose payload starts at offset {start} "
                "(no footer, next record or EOF follows)",
                offset=r.end,
            )
        raise MigrationFormatError(
            "cannot find where an undescribed section ends (no footer or next record found); "
            "pass schema= to decode it",
            offset=start,
        )

    def _footer(self, r: QEMUFileReader, section_id: int, name: str) -> bool:
        if r.peek_u8() != SectionType.FOOTER:
            if self.footers:
                cls = TruncatedStreamError if r.at_end() else MigrationFormatError
                raise cls(f"missing section footer for {name!r} (expected 0x7e)", offset=r.pos)
            self.footers = False
            return False
        at = r.pos
        r.u8()
        got = r.be32("a footer section id")
        if got != section_id:
            raise MigrationFormatError(
                f"mismatched section id in footer for {name!r}: read {got}, expected {section_id}",
                offset=at + 1,
            )
        self.footers = True
        return True

    def _command(self, r: QEMUFileReader, at: int, depth: int) -> CommandRecord:
        cmd = r.be16("a command number")
        length = r.be16("a command length")
        try:
            known: Command | None = Command(cmd)
        except ValueError:
            known = None
        if known is None or known is Command.INVALID:
            raise MigrationFormatError(
                f"MIG_CMD 0x{cmd:x} unknown (len 0x{length:x})", offset=at + 1
            )
        expected = COMMAND_LENGTHS.get(known)
        if expected is not None and length not in expected:
            raise MigrationFormatError(
                f"{known.name} received with bad length - expecting {expected[-1]}, got {length}",
                offset=at + 3,
            )
        data = r.read_bytes(length, f"the data of {known.name}")
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
        return CommandRecord(cmd, data, packaged, at, r.pos - at)

    def _plausible(self, v: memoryview, p: int, end: int) -> bool:
        """Whether a record (or EOF) plausibly starts at ``p`` (resynchronisation)."""
        t = v[p]
        if t == SectionType.EOF:
            if self.piecewise:  # the vmdesc (or the end) follows; its place is not known yet
                return p + 1 == end or v[p + 1] == SectionType.VMDESCRIPTION
            return p + 1 == (self.vmdesc_at if self.vmdesc_at is not None else end)
        if t in (SectionType.START, SectionType.FULL):
            if p + 6 > end:
                return False
            (sid,) = _BE32.unpack_from(v, p + 1)
            n = v[p + 5]
            q = p + 6 + n
            if sid > self.top_id + 0xFFFF or n == 0 or q + 8 > end:
                return False
            idstr = bytes(v[p + 6 : q])
            if not all(32 < c < 127 for c in idstr):
                return False
            inst, ver = struct.unpack_from(">II", v, q)
            return inst < 0x10000 and ver < 0x10000  # i6300esb_wdt is version 10000
        if t in (SectionType.PART, SectionType.END):
            return p + 5 <= end and _BE32.unpack_from(v, p + 1)[0] in self.starts
        if t == SectionType.COMMAND:
            return p + 5 <= end and _BE32.unpack_from(v, p + 1)[0] >> 16 in range(1, 12)
        return False


# Where a record may start: START/FULL with an id below 2^24, PART/END, a command
# with a known number (see _plausible); EOF is checked at its one place.
_EOF_VMDESC = re.compile(rb"\x00\x06\x00[\x00-\xff]{3}\{", re.DOTALL)
_HEADER_RE = re.compile(rb"[\x01\x04]\x00|[\x02\x03]|\x08\x00[\x01-\x0b]")
