"""Check a migration stream for every inconsistency miglab can see (``miglab verify``).

:func:`~miglab.stream.reader.load` stops at the first bad byte; verify keeps
going.  When the stream loads, the tree is checked for what the reader
does not enforce: section ids and kinds (duplicates, START without END,
PART/END after END), footers used by some sections and not others, RAM
pages beyond their block or never sent, the vmdesc against the sections
present and against the decoded sizes, the page size in the configuration
against the vmdesc, undecoded sections, bytes after the end.  When it does
not load, the failure is the first finding and the rest of the bytes are
scanned for section headers and footers (QEMU's own resynchronisation
points) to check what follows.

Every finding names the byte offset where it was seen.  Errors make
``miglab verify`` exit 1; warnings (an undecoded section) are shown but do
not.  An end of stream that had to be guessed (no footers, no vmdesc, an
undescribed last section) is an error: a cut after any 0x00 byte there
looks the same.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from miglab.errors import MiglabError
from miglab.stream.constants import RAM_PAGE_KINDS, Command, SectionType
from miglab.stream.model import CommandRecord, Opaque, Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.reader import load, open_source
from miglab.stream.resync import resync_marks
from miglab.stream.vmdesc import vmdesc_struct
from miglab.vmstate.state import VMState

if TYPE_CHECKING:
    from miglab.vmstate.from_schema import SchemaIndex

__all__ = ("Finding", "errors", "verify")

Severity = Literal["error", "warning"]
_BE32 = struct.Struct(">I")
# A START/FULL header: type, be32 id (< 0x10000), idstr length, idstr, be32 instance, be32 version.
_HEADER_RE = re.compile(rb"[\x01\x04]\x00\x00..([\x01-\xff])", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Finding:
    """One inconsistency.

    Attributes:
        severity: ``"error"`` (the stream is wrong) or ``"warning"`` (miglab
            could not check something, or had to guess).
        code: a short stable name for the kind of finding (``"footer-id"``).
        message: what was seen and what was expected.
        offset: byte offset in the input, when there is one.
    """

    severity: Severity
    code: str
    message: str
    offset: int | None = None

    def __str__(self) -> str:
        where = f"offset {self.offset} (0x{self.offset:x}): " if self.offset is not None else ""
        return f"{self.severity}: {self.code}: {where}{self.message}"


def errors(findings: list[Finding]) -> list[Finding]:
    """The findings of severity ``"error"``."""
    return [f for f in findings if f.severity == "error"]


def verify(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    schema: str | os.PathLike[str] | Mapping[str, Any] | SchemaIndex | None = None,
) -> list[Finding]:
    """Every inconsistency found in a stream, in offset order.

    Args:
        source: a file path or the stream's bytes.
        schema: a ``-dump-vmstate`` JSON (path or parsed), for streams
            without vmdesc, and to compare the machine type.

    Raises:
        MiglabError: the file cannot be read, or ``schema`` is unusable;
            bad stream bytes are findings, never exceptions.
    """
    view = open_source(source)
    index = None
    if schema is not None:
        from miglab.vmstate.from_schema import SchemaIndex

        index = SchemaIndex.load(schema)
    try:
        stream = load(view, schema=cast(Any, index))  # an index passes through SchemaIndex.load
    except MiglabError as exc:
        found = [Finding("error", "load", exc.message, exc.offset)]
        found += _resync(view, exc.offset or 0)
    else:
        found = list(_check(stream, view))
        machine = getattr(index, "machine", None)
        if machine and stream.machine and machine != stream.machine:
            found.append(
                Finding(
                    "error",
                    "schema-machine",
                    f"schema is for machine {machine!r}, the stream's configuration says "
                    f"{stream.machine!r}",
                )
            )
    return sorted(found, key=lambda f: f.offset if f.offset is not None else -1)


# --- a stream that loads -------------------------------------------------------
def _check(stream: Stream, view: memoryview) -> Iterator[Finding]:
    yield from _check_sections(stream)
    yield from _check_ram(stream)
    yield from _check_vmdesc(stream)
    if stream.trailer:
        at = len(view) - len(stream.trailer)
        yield Finding(
            "error",
            "trailing-bytes",
            f"{len(stream.trailer)} bytes after the end of the stream"
            + (" and its vmdesc" if stream.vmdesc is not None else ""),
            at,
        )


def _check_sections(stream: Stream) -> Iterator[Finding]:
    ids: dict[int, Section] = {}
    devices: dict[tuple[str, int], Section] = {}
    open_ids: dict[int, Section] = {}
    ended: set[int] = set()
    footers = {s.footer for s in stream.sections}
    if len(footers) > 1:
        first = next(s for s in stream.sections if not s.footer)
        yield Finding(
            "error",
            "footer-missing",
            f"section {first.name!r} (id {first.section_id}) has no footer although others do",
            first.offset,
        )
    yield from _check_commands(stream)
    for rec in stream.records:
        if isinstance(rec, CommandRecord):
            continue
        s = rec
        if s.kind.has_full_header:
            other = ids.get(s.section_id)
            if other is not None:
                yield Finding(
                    "error",
                    "duplicate-section-id",
                    f"section id {s.section_id} is used by {other.name!r} at {other.offset} "
                    f"and again by {s.name!r}",
                    s.offset,
                )
            ids[s.section_id] = s
            key = (s.name, s.instance_id)
            twin = devices.get(key)
            if twin is not None and twin.kind is s.kind:
                yield Finding(
                    "error",
                    "duplicate-section",
                    f"{s.kind.value} section {s.name!r} instance {s.instance_id} appears twice "
                    f"(first at {twin.offset})",
                    s.offset,
                )
            devices[key] = s
            if s.kind is SectionKind.START:
                open_ids[s.section_id] = s
        else:
            if s.section_id in ended:
                yield Finding(
                    "error",
                    "after-end",
                    f"{s.kind.value} section for id {s.section_id} ({s.name!r}) after its END",
                    s.offset,
                )
            if s.kind is SectionKind.END:
                open_ids.pop(s.section_id, None)
                ended.add(s.section_id)
        if isinstance(s.payload, VMState):
            yield from _check_versions(s, s.payload)
        if s.name == "ram" and not isinstance(s.payload, RamPayload):
            yield Finding(
                "error",
                "ram-not-ram",
                f"section 'ram' instance {s.instance_id} version {s.version_id} is not the RAM "
                "section (instance 0, version 4)",
                s.offset,
            )
        if isinstance(s.payload, Opaque):
            yield Finding(
                "warning",
                "undecoded",
                f"{s.kind.value} section {s.name!r}: {len(s.payload)} bytes not checked "
                f"({s.payload.reason})",
                s.offset,
            )
    for s in open_ids.values():
        yield Finding(
            "error",
            "no-end",
            f"iterative section {s.name!r} (id {s.section_id}) never gets its END section",
            s.offset,
        )
    if stream.vmdesc is None and stream.configuration is not None:
        yield Finding(
            "warning",
            "no-vmdesc",
            "the stream has a configuration block but no vmdesc trailer: QEMU writes one unless "
            "the machine suppresses it, so the stream may have been cut after its EOF",
        )
    if stream.vmdesc is None and stream.sections and not any(s.footer for s in stream.sections):
        yield from _hidden_headers(stream, ids)
        last = stream.records[-1]
        if isinstance(last, Section) and isinstance(last.payload, Opaque):
            # A cut after any 0x00 byte of the last section reads the same: an error,
            # since nothing shows the stream is complete.
            yield Finding(
                "error",
                "end-guessed",
                "no footers and no vmdesc: where the last undescribed section ends (and so "
                "whether the stream is complete) is a guess",
                last.offset,
            )


def _hidden_headers(stream: Stream, ids: dict[int, Section]) -> Iterator[Finding]:
    """Section headers inside undescribed payloads of a stream without footers.

    Such a payload ends where the next plausible record starts; a corrupted
    header (an instance id or version out of range) is not plausible, so its
    whole section is read as part of the one before.  A header-shaped run of
    bytes whose section id no section has, and that QEMU's one-by-one
    numbering could have given, is that header.
    """
    top = max(ids, default=0)
    for s in stream.sections:
        if not isinstance(s.payload, Opaque):
            continue
        data = s.payload.data
        start = s.offset + _header_size(s)
        for m in _HEADER_RE.finditer(data):
            p = m.start()
            sid = _BE32.unpack_from(data, p + 1)[0]
            n = data[p + 5]
            q = p + 6 + n
            if sid in ids or sid > top + 16 or q + 8 > len(data):
                continue
            name = bytes(data[p + 6 : q])
            if all(32 < c < 127 for c in name):
                yield Finding(
                    "error",
                    "hidden-section",
                    f"undescribed section {s.name!r} holds what looks like the header of section "
                    f"id {sid} {name.decode()!r}, an id no section has: a corrupted header may "
                    "have merged it into this one",
                    start + p,
                )


# Commands QEMU sends only during setup, before the first section (savevm.c).
_SETUP_ONLY = {Command.OPEN_RETURN_PATH, Command.POSTCOPY_ADVISE}
# Commands of postcopy recovery, never part of a migration that sends a START.
_RECOVERY_ONLY = {Command.POSTCOPY_RESUME, Command.RECV_BITMAP}


def _check_commands(stream: Stream) -> Iterator[Finding]:
    seen_section = advised = False
    fresh = any(s.kind is SectionKind.START for s in stream.sections)
    for rec in stream.records:
        if isinstance(rec, Section):
            seen_section = True
            continue
        cmd = rec.command
        if cmd in _SETUP_ONLY and seen_section:
            yield Finding(
                "error", "command-order", f"{rec.name} after the first section", rec.offset
            )
        if cmd in _RECOVERY_ONLY and fresh:
            yield Finding(
                "error",
                "command-out-of-place",
                f"{rec.name} belongs to postcopy recovery, not to a migration with START sections",
                rec.offset,
            )
        if cmd in (Command.POSTCOPY_LISTEN, Command.POSTCOPY_RUN) and not advised:
            yield Finding(
                "error", "command-order", f"{rec.name} without POSTCOPY_ADVISE before", rec.offset
            )
        advised = advised or cmd == Command.POSTCOPY_ADVISE


def _check_versions(s: Section, state: VMState, depth: int = 0) -> Iterator[Finding]:
    """Subsection versions on the wire against their description (vmdesc or schema)."""
    for name, sub in state.subsections.items():
        if sub.version_id != sub.desc.version_id:
            yield Finding(
                "error",
                "subsection-version",
                f"section {s.name!r}: subsection {name!r} has version {sub.version_id}, "
                f"its description says {sub.desc.version_id}",
                s.offset,
            )
        if depth < 64:
            yield from _check_versions(s, sub, depth + 1)


def _check_ram(stream: Stream) -> Iterator[Finding]:
    ctx = stream.ram
    page = stream.page_size
    names: dict[str, int] = {}
    for b in ctx.blocks:
        if b.name in names:
            yield Finding("error", "ram-block-duplicate", f"RAM block {b.name!r} listed twice")
        names[b.name] = 1
        if b.used_length % page:
            yield Finding(
                "error",
                "ram-block-length",
                f"RAM block {b.name!r} is {b.used_length} bytes, not a multiple of the "
                f"{page}-byte page",
            )
    chunks = [s for s in stream.sections if isinstance(s.payload, RamPayload)]
    if not chunks or not ctx.blocks:
        return
    # One byte per page and one pass over the records in plain Python: no
    # numpy, whose import costs more than this loop on all but huge streams.
    mask = page - 1
    # A block may *declare* any size: marks beyond what the input could fill
    # (each sent page costs at least 9 bytes) are kept sparse, not allocated.
    room = max(stream.source_size, 1 << 24)
    sent = [_marks(max(b.used_length // page, 0), room) for b in ctx.blocks]
    npages = [len(marks) for marks in sent]
    nblocks = len(ctx.blocks)
    for s in chunks:
        p = s.payload
        assert isinstance(p, RamPayload)
        beyond: dict[int, list[int]] = {}  # block -> [count, first offset, first payload offset]
        for word, bi, at in p.records():
            if not word & RAM_PAGE_KINDS or not 0 <= bi < nblocks:
                continue
            off = word & ~mask
            n = off // page
            if n < npages[bi]:
                sent[bi][n] = 1
            elif bi in beyond:
                beyond[bi][0] += 1
            else:
                beyond[bi] = [1, off, at]
        for bi, (count, off, at) in sorted(beyond.items()):
            b = ctx.blocks[bi]
            yield Finding(
                "error",
                "page-beyond-block",
                f"{count} page(s) of RAM block {b.name!r} lie beyond its {b.used_length} bytes "
                f"(first at block offset 0x{off:x})",
                at - 8,
            )
    if stream.eof and any(s.kind is SectionKind.END for s in chunks) and not ctx.ignore_shared:
        for b, marks in zip(ctx.blocks, sent, strict=True):
            missing = len(marks) - marks.count(1)
            if missing:
                first = marks.find(0)
                yield Finding(
                    "error",
                    "page-never-sent",
                    f"{missing} page(s) of RAM block {b.name!r} are never sent "
                    f"(first at block offset 0x{first * page:x}); precopy sends every page",
                )


class _SparseMarks:
    """The pages sent of a block declared larger than the input could fill.

    The interface of the ``bytearray`` marks ``_check_ram`` uses (``len``,
    item assignment, ``count(1)``, ``find(0)``), in memory proportional to the
    pages actually sent.
    """

    __slots__ = ("_n", "_sent")

    def __init__(self, n: int) -> None:
        self._n = n
        self._sent: set[int] = set()

    def __len__(self) -> int:
        return self._n

    def __setitem__(self, i: int, _value: int) -> None:
        self._sent.add(i)

    def count(self, _value: int) -> int:
        return len(self._sent)

    def find(self, _value: int) -> int:
        i = 0
        while i in self._sent:
            i += 1
        return i if i < self._n else -1


def _marks(n: int, room: int) -> bytearray | _SparseMarks:
    return bytearray(n) if n <= room else _SparseMarks(n)


def _check_vmdesc(stream: Stream) -> Iterator[Finding]:
    vmdesc = stream.vmdesc
    if vmdesc is None:
        return
    full = {(s.name, s.instance_id): s for s in stream.sections if s.kind is SectionKind.FULL}
    listed: set[tuple[str, int]] = set()
    for dev in vmdesc.get("devices", []):
        key = (dev.get("name"), dev.get("instance_id"))
        listed.add(key)
        s = full.get(key)
        if s is None:
            yield Finding(
                "error",
                "vmdesc-no-section",
                f"vmdesc lists device {key[0]!r} instance {key[1]} but the stream has no such section",
            )
            continue
        if isinstance(s.payload, VMState):
            want = _vmdesc_size(dev)
            got = _payload_size(s)
            if want is not None and want != got:
                yield Finding(
                    "error",
                    "vmdesc-size",
                    f"section {s.name!r} has {got} payload bytes, its vmdesc sizes add up to {want}",
                    s.offset,
                )
    for key, s in full.items():
        if key not in listed:
            yield Finding(
                "error",
                "section-not-in-vmdesc",
                f"section {key[0]!r} instance {key[1]} is not in the vmdesc",
                s.offset,
            )
    cfg = stream.configuration
    entry = vmdesc.get("configuration")
    if cfg is not None and entry is not None:
        in_vmdesc, in_block = _vmdesc_size(entry), _vmdesc_size(vmdesc_struct(cfg))
        if in_vmdesc != in_block:
            yield Finding(
                "error",
                "vmdesc-configuration",
                f"the vmdesc's configuration entry adds up to {in_vmdesc} bytes, the configuration "
                f"block (machine {stream.machine!r}) to {in_block}: stale after an edit?",
                9,  # the configuration block follows magic, version and its 0x07 byte
            )
    bits = cfg.subsections.get("configuration/target-page-bits") if cfg is not None else None
    page = vmdesc.get("page_size")
    if bits is not None and isinstance(page, int):
        cfg_page = 1 << min(int(bits.fields["target_page_bits"]), 62)
        if cfg_page != page:
            yield Finding(
                "error",
                "page-size",
                f"configuration says {cfg_page}-byte target pages, the vmdesc says {page}",
            )


def _header_size(s: Section) -> int:
    """Bytes of a START/FULL section's header."""
    return 1 + 4 + 1 + len(s.name.encode("utf-8", "surrogateescape")) + 4 + 4


def _payload_size(s: Section) -> int:
    """Payload bytes of a FULL section: its size less header and footer."""
    return s.size - _header_size(s) - (5 if s.footer else 0)


def _vmdesc_size(entry: Any, depth: int = 0) -> int | None:
    """Bytes a vmdesc device (or struct) entry says are on the wire; None if unsure."""
    # dict, not Mapping: parsed JSON holds dicts, and an ABC check costs 10x.
    if not isinstance(entry, dict) or depth > 64:
        return None
    total = 0
    for f in entry.get("fields", []):
        if not isinstance(f, dict):
            return None
        n = f.get("array_len", 1)
        if not isinstance(n, int):
            return None
        if f.get("type") in ("struct", "vstruct"):
            inner = _vmdesc_size(f.get("struct"), depth + 1)
        elif f.get("type") == "tmp" and "fields" in f:
            inner = _vmdesc_size(f, depth + 1)
        else:
            inner = f.get("size")
        if not isinstance(inner, int):
            return None
        total += inner * n
    for sub in entry.get("subsections", []):
        inner = _vmdesc_size(sub, depth + 1)
        name = sub.get("vmsd_name") if isinstance(sub, dict) else None
        if inner is None or not isinstance(name, str):
            return None
        total += 1 + 1 + len(name.encode()) + 4 + inner  # QEMU_VM_SUBSECTION, name, version
    return total


# --- a stream that does not load ------------------------------------------------
def _resync(view: memoryview, after: int) -> Iterator[Finding]:
    """Check section headers and footers found by scanning the bytes past ``after``."""
    obj = view.obj
    # The input itself where it has rfind and the same offsets (no copy of the file).
    data: Any = (
        obj
        if isinstance(obj, bytes | bytearray | mmap.mmap) and len(obj) == len(view)
        else bytes(view)
    )
    end = len(data)
    current: tuple[int, int] | None = None
    for p, kind, sid in resync_marks(data, after):
        if kind == "header":
            current = (p, sid)
        elif current is not None:
            if sid != current[1]:
                yield Finding(
                    "error",
                    "footer-id",
                    f"footer names section id {sid}, the section header at {current[0]} "
                    f"has id {current[1]} (found by resynchronising)",
                    p + 1,
                )
            current = None
    if data.rfind(bytes([SectionType.EOF, SectionType.VMDESCRIPTION])) < 0 and end:
        yield Finding("warning", "no-vmdesc", "no vmdesc trailer found", None)
