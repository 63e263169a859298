"""Where a record starts when nobody can say where the one before ends: the one resync.

QEMU's stream carries no lengths (QEMU-FORMAT.md 1.1, 1.5): a section's payload ends
where the code that understands it stops reading.  A payload miglab cannot decode (no
description; a legacy handler it has no model of) therefore ends where the next record
plausibly starts: its footer (``0x7e`` and the section's id, QEMU's only
resynchronisation check), else, in streams without footers (pc <= 2.3), the next
plausible section header, command or EOF.  "Plausible" is one predicate,
:meth:`Resync.plausible`, over what the reader has learnt so far: whether sections carry
footers, the highest section id (QEMU numbers sections one by one), the iterative
sections a START opened, where the vmdesc trailer starts.

The reader finds opaque spans (:meth:`Resync.payload_end`), the vmdesc's size of a legacy
section (:meth:`Resync.sized_end`) and the end of a schema decode
(:meth:`Resync.at_boundary`) with it; ``verify`` scans the rest of a stream that does
not load with :func:`resync_marks`, the same predicate learning as it goes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Container, Iterator

from miglab.errors import MigrationFormatError, TruncatedStreamError
from miglab.stream.framing import FOOTER_SIZE
from miglab.visitors.qemufile import QEMUFileReader
from miglab.wire import Command, SectionType, byte_class

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any, Literal

__all__ = ("Resync", "resync_marks")

_BE32 = struct.Struct(">I")
_IDS = struct.Struct(">II")
_FULL_HEADER = (SectionType.START, SectionType.FULL)

# Where a record may start: START/FULL with an id below 2^24, PART/END, a command with a
# known number (see Resync.plausible); EOF is checked at its one place.
_FULL_HEADERS = byte_class((SectionType.START, SectionType.FULL))
_RECORD_RE = re.compile(
    _FULL_HEADERS + rb"\x00|"
    + byte_class((SectionType.PART, SectionType.END)) + b"|"
    + byte_class((SectionType.COMMAND,)) + rb"\x00"
    + byte_class(c for c in Command if c != Command.INVALID)
)  # fmt: skip
# START/FULL headers and footers with an id below 2^24: what resync_marks checks.
_MARK_RE = re.compile(_FULL_HEADERS + rb"\x00|" + byte_class((SectionType.FOOTER,)) + rb"\x00")
# EOF, then the vmdesc record with a JSON length below 2^24 and the JSON's "{".
_EOF_VMDESC = re.compile(
    byte_class((SectionType.EOF,)) + byte_class((SectionType.VMDESCRIPTION,)) + rb"\x00.{3}\{",
    re.DOTALL,
)


class Resync:
    """QEMU's one resynchronisation point, the record boundary, and what it has learnt.

    Args:
        buf: the input, or something with ``find``/``rfind`` and the same offsets
            (the mapping or bytes object itself: no copy of a file).
        open_ids: the ids of the iterative sections opened by a START so far (the
            reader's table of START sections, kept up to date by it).
        piecewise: the input arrives in pieces (the live proxy): the vmdesc's place
            is not known in advance, an EOF is plausible where a vmdesc header follows.

    Attributes:
        footers: whether sections carry footers (None until one section was read).
        top_id: the highest START/FULL section id read: QEMU numbers sections one by
            one, so a plausible next header's id is at most a little above it.
        vmdesc_at: offset of the vmdesc trailer's type byte, when known.
    """

    __slots__ = ("buf", "footers", "open_ids", "piecewise", "top_id", "vmdesc_at")

    def __init__(self, buf: Any, open_ids: Container[int], *, piecewise: bool = False) -> None:
        self.buf = buf
        self.open_ids = open_ids
        self.piecewise = piecewise
        self.footers: bool | None = None
        self.top_id = 0
        self.vmdesc_at: int | None = None

    def footer(self, r: QEMUFileReader, section_id: int, name: str) -> bool:
        """Read the footer of section ``section_id`` (idstr ``name``) if there is one.

        The first section says whether the stream has footers; from then on a missing
        footer is an error, and a footer must name its section's id.
        """
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

    def plausible(self, v: memoryview, p: int, end: int) -> bool:
        """Whether a record (or EOF) plausibly starts at ``p``."""
        t = v[p]
        if t == SectionType.EOF:
            if self.piecewise:  # the vmdesc (or the end) follows; its place is not known yet
                return p + 1 == end or v[p + 1] == SectionType.VMDESCRIPTION
            return p + 1 == (self.vmdesc_at if self.vmdesc_at is not None else end)
        if t in _FULL_HEADER:
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
            inst, ver = _IDS.unpack_from(v, q)
            return inst < 0x10000 and ver < 0x10000  # i6300esb_wdt is version 10000
        if t in (SectionType.PART, SectionType.END):
            return p + 5 <= end and _BE32.unpack_from(v, p + 1)[0] in self.open_ids
        if t == SectionType.COMMAND:
            return p + 5 <= end and _BE32.unpack_from(v, p + 1)[0] >> 16 in range(1, 12)
        return False

    def cut_short(self, v: memoryview, p: int, end: int, *, after_footer: bool) -> bool:
        """Whether the input ends inside what may be a record header at ``p``: every byte
        of it that arrived is what :meth:`plausible` accepts.  Right after a footer any
        start will do; elsewhere a START/FULL header needs at least its id (one a little
        above :attr:`top_id` when its idstr length is cut)."""
        t = v[p]
        if t in _FULL_HEADER:
            if p + 5 > end:
                return after_footer
            (sid,) = _BE32.unpack_from(v, p + 1)
            if p + 6 > end:
                return self.top_id < sid <= self.top_id + 256
            n = v[p + 5]
            q = p + 6 + n
            if sid > self.top_id + 0xFFFF or n == 0 or q + 8 <= end:
                return False
            if not all(32 < c < 127 for c in v[p + 6 : min(q, end)]):
                return False
            return q + 4 > end or _BE32.unpack_from(v, q)[0] < 0x10000
        if t in (SectionType.PART, SectionType.END):
            return p + 5 > end
        if t == SectionType.COMMAND:  # a be16 command number of 1..11, then be16 length
            return (
                p + 5 > end
                and (p + 2 > end or v[p + 1] == 0)
                and (p + 3 > end or 1 <= v[p + 2] <= 11)
            )
        return False

    def at_boundary(self, section_id: int) -> Callable[[QEMUFileReader], bool]:
        """A predicate: does a payload of section ``section_id`` ending at ``r.pos`` end
        at a record boundary (its footer, or without footers the next record)?"""

        def ok(r: QEMUFileReader) -> bool:
            p, v = r.pos, r.view
            if p >= r.end:
                return False
            if v[p] == SectionType.FOOTER:
                return p + FOOTER_SIZE <= r.end and _BE32.unpack_from(v, p + 1)[0] == section_id
            return self.footers is False and self.plausible(v, p, r.end)

        return ok

    def sized_end(self, r: QEMUFileReader, section_id: int, size: int) -> bool:
        """Whether a payload of ``size`` bytes from ``r.pos`` (a vmdesc's size) ends at a
        record boundary; if so ``r.pos`` moves there."""
        p, v = r.pos + size, r.view
        if size < 0 or p >= r.end:
            return False
        if self.footers is not False and v[p] == SectionType.FOOTER:
            ok = p + FOOTER_SIZE <= r.end and _BE32.unpack_from(v, p + 1)[0] == section_id
        else:
            ok = self.footers is not True and self.plausible(v, p, r.end)
        if ok:
            r.pos = p
        return ok

    def payload_end(self, r: QEMUFileReader, section_id: int) -> None:
        """Move ``r.pos`` to the end of an undecoded payload starting there: its footer
        (or, without footers, the next plausible record or EOF).

        A stream without a vmdesc may have been cut short: a footer, or a START/FULL
        header, that the input ends inside the header after (or of) counts, so that the
        cut is reported in the header it lands in, not in this payload.

        Raises:
            TruncatedStreamError: none follows and the stream has no vmdesc (cut short).
            MigrationFormatError: none follows although the stream goes on to a vmdesc.
        """
        start, v, data, end = r.pos, r.view, self.buf, r.end
        cut = self.vmdesc_at is None and not self.piecewise
        if self.footers is not False:
            needle = bytes([SectionType.FOOTER]) + _BE32.pack(section_id)
            p = data.find(needle, start, end)
            while p >= 0 and p + FOOTER_SIZE < end and not self.plausible(v, p + FOOTER_SIZE, end):
                if cut and self.cut_short(v, p + FOOTER_SIZE, end, after_footer=True):
                    break
                p = data.find(needle, p + 1, end)
            if p >= 0:
                r.pos = p
                return
        if self.footers is not True:
            # EOF is plausible at one place only, so the scan looks for record types
            # (not every 0x00 byte) and checks that place when it passes it.
            eof = (self.vmdesc_at if self.vmdesc_at is not None else end) - 1
            if self.piecewise:  # the first EOF byte the vmdesc's header follows
                found = _EOF_VMDESC.search(data, start + 1, end)
                eof = found.start() if found is not None else eof
            for m in _RECORD_RE.finditer(data, start + 1, end):
                p = m.start()
                if start < eof < p and v[eof] == SectionType.EOF:
                    p = eof
                elif not self.plausible(v, p, end) and not (
                    cut and v[p] in _FULL_HEADER and self.cut_short(v, p, end, after_footer=False)
                ):
                    continue
                r.pos = p
                return
            if start < eof < end and v[eof] == SectionType.EOF:
                r.pos = eof
                return
        if self.vmdesc_at is None:
            # No vmdesc at the end and no footer or next record to be found:
            # the input was cut short.
            raise TruncatedStreamError(
                f"stream ends inside the undescribed section whose payload starts at offset {start} "
                "(no footer, next record or EOF follows)",
                offset=end,
            )
        raise MigrationFormatError(
            "cannot find where an undescribed section ends (no footer or next record found); "
            "pass schema= to decode it",
            offset=start,
        )


def resync_marks(buf: Any, after: int) -> Iterator[tuple[int, Literal["header", "footer"], int]]:
    """START/FULL headers and footers that plausibly are ones, past ``after``, in order:
    ``(offset, "header" or "footer", section_id)`` each.

    For a stream that does not load (``verify`` checks that each header's footer names
    its id), with the reader's :class:`Resync` learning as it goes: a header counts
    where :meth:`Resync.plausible` says one starts, and a footer where a plausible
    record follows it; the START headers found open their ids for the PART/END records
    after them.
    """
    v = buf if isinstance(buf, memoryview) else memoryview(buf)
    end = len(v)
    opened: set[int] = set()
    sync = Resync(buf, opened, piecewise=True)
    for m in _MARK_RE.finditer(buf, after):
        p = m.start()
        t = v[p]
        if t == SectionType.FOOTER:
            if p + FOOTER_SIZE < end and sync.plausible(v, p + FOOTER_SIZE, end):
                yield p, "footer", _BE32.unpack_from(v, p + 1)[0]
        elif sync.plausible(v, p, end):
            (sid,) = _BE32.unpack_from(v, p + 1)
            sync.top_id = max(sync.top_id, sid)
            if t == SectionType.START:
                opened.add(sid)
            yield p, "header", sid
