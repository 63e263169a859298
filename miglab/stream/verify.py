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

Every finding (a :class:`~miglab.findings.Finding`, the record
``check-schemas`` reports in too) names the byte offset where it was seen,
when there is one.  Errors make ``miglab verify`` exit 1; warnings (an
undecoded section) are shown but do not.  An end of stream that had to be guessed (no footers, no vmdesc, an
undescribed last section) is an error: a cut after any 0x00 byte there
looks the same.

The checks of RAM pages (:mod:`~miglab.stream.verify_ram`) and of the vmdesc
(:mod:`~miglab.stream.verify_vmdesc`) have their own modules; this one has
the sections, commands and the scan of a stream that does not load.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from miglab.errors import MiglabError
from miglab.findings import ERROR, WARNING, Finding
from miglab.stream.model import CommandRecord, Opaque, Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.reader import load, open_source
from miglab.stream.resync import resync_marks
from miglab.stream.verify_ram import SentPages, check_ram
from miglab.stream.verify_sections import check_numbering
from miglab.stream.verify_vmdesc import check_vmdesc, header_size
from miglab.vmstate.layout import paused_gc
from miglab.vmstate.state import VMState
from miglab.wire import Command, SectionType

if TYPE_CHECKING:
    from miglab.stream.progress import Progress
    from miglab.vmstate.from_schema import SchemaIndex

__all__ = ("verify",)

_BE32 = struct.Struct(">I")
_IDS = struct.Struct(">II")
# A START/FULL header: type, be32 id, idstr length, idstr, be32 instance, be32 version
# (a lookahead: one header's bytes may start inside the match of bytes before it).
_HEADER_RE = re.compile(rb"(?=[\x01\x04]....[\x01-\xff])", re.DOTALL)


def verify(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    schema: str | os.PathLike[str] | Mapping[str, Any] | SchemaIndex | None = None,
    progress: Progress | None = None,
) -> list[Finding]:
    """Every inconsistency found in a stream, in offset order.

    Args:
        source: a file path or the stream's bytes.
        schema: a ``-dump-vmstate`` JSON (path or parsed), for streams
            without vmdesc, and to compare the machine type.
        progress: told how far reading and then checking RAM are
            (:mod:`miglab.stream.progress`).

    Raises:
        MiglabError: the file cannot be read, or ``schema`` is unusable;
            bad stream bytes are findings, never exceptions.
    """
    view = open_source(source)
    index = None
    if schema is not None:
        from miglab.vmstate.from_schema import SchemaIndex

        index = SchemaIndex.load(schema)
    # the RAM pages sent are marked in the reader's pass, while it has them in hand
    marked = SentPages(len(view))
    try:
        # an index passes through SchemaIndex.load
        stream = load(view, schema=cast(Any, index), progress=progress, on_ram_chunk=marked)
    except MiglabError as exc:
        marked.finish(None)  # the pages of the chunks read since its last batch
        found = [Finding(ERROR, "load", exc.message, offset=exc.offset)]
        found += _resync(view, exc.offset or 0)
    else:
        stream.ram.on_chunk = None
        with paused_gc():  # the checks build arrays and findings, no cycles
            found = list(_check(stream, view, progress, marked))
        if progress is not None:
            progress("checking", len(view), len(view))
        machine = getattr(index, "machine", None)
        if machine and stream.machine and machine != stream.machine:
            found.append(
                Finding(
                    ERROR,
                    "schema-machine",
                    f"schema is for machine {machine!r}, the stream's configuration says "
                    f"{stream.machine!r}",
                )
            )
    return sorted(found, key=lambda f: f.offset if f.offset is not None else -1)


# --- a stream that loads -------------------------------------------------------
def _check(
    stream: Stream, view: memoryview, progress: Progress | None, marked: SentPages
) -> Iterator[Finding]:
    yield from _check_sections(stream)
    yield from check_numbering(stream)
    yield from check_ram(stream, progress, marked)
    yield from check_vmdesc(stream)
    if stream.trailer:
        at = len(view) - len(stream.trailer)
        yield Finding(
            ERROR,
            "trailing-bytes",
            f"{len(stream.trailer)} bytes after the end of the stream"
            + (" and its vmdesc" if stream.vmdesc is not None else ""),
            offset=at,
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
            ERROR,
            "footer-missing",
            f"section {first.name!r} (id {first.section_id}) has no footer although others do",
            offset=first.offset,
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
                    ERROR,
                    "duplicate-section-id",
                    f"section id {s.section_id} is used by {other.name!r} at {other.offset} "
                    f"and again by {s.name!r}",
                    offset=s.offset,
                )
            ids[s.section_id] = s
            key = (s.name, s.instance_id)
            twin = devices.get(key)
            if twin is not None and twin.kind is s.kind:
                # QEMU < 8.2 registers every user-mode network's slirp state as instance 0
                # (net/slirp.c until b23db4cd82): real streams, whose second one the
                # destination loads into the first netdev.
                slirp = s.name == "slirp"
                yield Finding(
                    WARNING if slirp else ERROR,
                    "duplicate-section",
                    f"{s.kind.value} section {s.name!r} instance {s.instance_id} appears twice "
                    f"(first at {twin.offset})"
                    + ("; QEMU < 8.2 numbers every slirp netdev 0" if slirp else ""),
                    offset=s.offset,
                )
            devices[key] = s
            if s.kind is SectionKind.START:
                open_ids[s.section_id] = s
        else:
            if s.section_id in ended:
                yield Finding(
                    ERROR,
                    "after-end",
                    f"{s.kind.value} section for id {s.section_id} ({s.name!r}) after its END",
                    offset=s.offset,
                )
            if s.kind is SectionKind.END:
                open_ids.pop(s.section_id, None)
                ended.add(s.section_id)
        if isinstance(s.payload, VMState):
            yield from _check_versions(s, s.payload)
        if s.name == "ram" and not isinstance(s.payload, RamPayload):
            yield Finding(
                ERROR,
                "ram-not-ram",
                f"section 'ram' instance {s.instance_id} version {s.version_id} is not the RAM "
                "section (instance 0, version 4)",
                offset=s.offset,
            )
        if isinstance(s.payload, Opaque):
            yield Finding(
                WARNING,
                "undecoded",
                f"{s.kind.value} section {s.name!r}: {len(s.payload)} bytes not checked "
                f"({s.payload.reason})",
                offset=s.offset,
            )
    for s in open_ids.values():
        yield Finding(
            ERROR,
            "no-end",
            f"iterative section {s.name!r} (id {s.section_id}) never gets its END section",
            offset=s.offset,
        )
    if stream.vmdesc is None and stream.configuration is not None:
        yield Finding(
            WARNING,
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
                ERROR,
                "end-guessed",
                "no footers and no vmdesc: where the last undescribed section ends (and so "
                "whether the stream is complete) is a guess",
                offset=last.offset,
            )


def _hidden_headers(stream: Stream, ids: dict[int, Section]) -> Iterator[Finding]:
    """Section headers inside undescribed payloads of a stream without footers.

    Such a payload ends where the next plausible record starts; a corrupted
    header (an instance id or version out of range) is not plausible, so its
    whole section is read as part of the one before.  A header-shaped run of
    bytes whose section id no section has, and that QEMU's one-by-one
    numbering could have given, is that header; so is one with any other id
    (the id is what was corrupted) whose idstr of 3 or more printable bytes is
    followed by an instance and a version below 256.
    """
    top = max(ids, default=0)
    for s in stream.sections:
        if not isinstance(s.payload, Opaque):
            continue
        data = s.payload.data
        start = s.offset + header_size(s)
        for m in _HEADER_RE.finditer(data):
            p = m.start()
            sid = _BE32.unpack_from(data, p + 1)[0]
            n = data[p + 5]
            q = p + 6 + n
            if sid in ids or q + 8 > len(data):
                continue
            name = bytes(data[p + 6 : q])
            inst, ver = _IDS.unpack_from(data, q)
            # An id QEMU's numbering could have given; else (a corrupted id) a header whose
            # idstr, instance and version look like QEMU's.
            near = sid <= top + 16 or (n >= 3 and inst < 0x100 and ver < 0x100)
            if near and all(32 < c < 127 for c in name):
                yield Finding(
                    ERROR,
                    "hidden-section",
                    f"undescribed section {s.name!r} holds what looks like the header of section "
                    f"id {sid} {name.decode()!r}, an id no section has: a corrupted header may "
                    "have merged it into this one",
                    offset=start + p,
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
                ERROR, "command-order", f"{rec.name} after the first section", offset=rec.offset
            )
        if cmd in _RECOVERY_ONLY and fresh:
            yield Finding(
                ERROR,
                "command-out-of-place",
                f"{rec.name} belongs to postcopy recovery, not to a migration with START sections",
                offset=rec.offset,
            )
        if cmd in (Command.POSTCOPY_LISTEN, Command.POSTCOPY_RUN) and not advised:
            yield Finding(
                ERROR,
                "command-order",
                f"{rec.name} without POSTCOPY_ADVISE before",
                offset=rec.offset,
            )
        advised = advised or cmd == Command.POSTCOPY_ADVISE


def _check_versions(s: Section, state: VMState, depth: int = 0) -> Iterator[Finding]:
    """Subsection versions on the wire against their description (vmdesc or schema)."""
    for name, sub in state.subsections.items():
        if sub.version_id != sub.desc.version_id:
            yield Finding(
                ERROR,
                "subsection-version",
                f"section {s.name!r}: subsection {name!r} has version {sub.version_id}, "
                f"its description says {sub.desc.version_id}",
                offset=s.offset,
            )
        if depth < 64:
            yield from _check_versions(s, sub, depth + 1)


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
                    ERROR,
                    "footer-id",
                    f"footer names section id {sid}, the section header at {current[0]} "
                    f"has id {current[1]} (found by resynchronising)",
                    offset=p + 1,
                )
            current = None
    if data.rfind(bytes([SectionType.EOF, SectionType.VMDESCRIPTION])) < 0 and end:
        yield Finding(WARNING, "no-vmdesc", "no vmdesc trailer found")
