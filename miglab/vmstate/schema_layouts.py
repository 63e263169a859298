"""Candidate layouts of one schema entry, and the description each one is.

A schema's vmsd (:mod:`miglab.vmstate.schema`) stands for a small family of wire
layouts: fields with a ``field_exists`` predicate present or absent, and, before QEMU 8.1, any
field possibly an array of unknown length.  A :class:`Choice` picks one member of the family;
:func:`build` turns entry + choice into a
:class:`~miglab.vmstate.description.VMStateDescription` (sizes become ``uint8`` ...
``uint64``, ``unused*`` fields ``unused_buffer``, other sizes buffers, nested descriptions
structs); :func:`array_choices` proposes array lengths that make the fields end where the
bytes left before a subsection or record boundary say.  These are static sizes and guesses
over the schema's entries, before a description exists: decoding itself is the one walk
(:mod:`miglab.vmstate.from_schema`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from miglab.limits import LIMITS
from miglab.visitors.qemufile import QEMUFileReader
from miglab.vmstate.description import (
    VMStateDescription,
    VMStateField,
    describe,
    field,
    unique_name,
)
from miglab.vmstate.schema import SchemaField, SchemaVmsd
from miglab.wire import SectionType, byte_class

__all__ = ("Choice", "Path_", "array_choices", "build", "walk_entry")

_MAX_BOUNDARIES = 8  # record boundaries / subsection starts considered per layout
_SCAN_BYTES = 1 << 20  # how far past the single-element layout a boundary is looked for
_SCAN_CHECKS = 20000  # boundary_ok calls per scan
_INTS = {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}
# The record types that can follow a section's payload: EOF, a section, a command, a footer.
_MARKERS = re.compile(
    byte_class(
        (
            SectionType.EOF,
            SectionType.START,
            SectionType.PART,
            SectionType.END,
            SectionType.FULL,
            SectionType.COMMAND,
            SectionType.FOOTER,
        )
    )
)

Path_ = tuple[int, ...]  # field indices from the top description down


@dataclass(frozen=True, slots=True)
class Choice:
    """One candidate layout: absent predicated fields, array lengths."""

    absent: frozenset[Path_] = frozenset()
    counts: tuple[tuple[Path_, int, str | None], ...] = ()  # (path, count, count field name)


def _on_wire(f: SchemaField, version: int) -> bool:
    # QEMU: with a field_exists predicate the version is not looked at.
    return f.exists or f.version_id <= version


def walk_entry(
    sd: SchemaVmsd, version: int, prefix: Path_, single: bool
) -> Iterator[tuple[Path_, SchemaField, bool]]:
    """Yield (path, field, in_single_chain) for every field that may be on the wire."""
    for i, f in enumerate(sd.fields):
        if not _on_wire(f, version):
            continue
        path = (*prefix, i)
        yield path, f, single
        if f.struct is not None:
            yield from walk_entry(f.struct, f.struct.version_id, path, single and f.num is None)


def build(sd: SchemaVmsd, choice: Choice, version: int, prefix: Path_ = ()) -> VMStateDescription:
    counts = {p: (n, nf) for p, n, nf in choice.counts}
    fields: list[VMStateField] = []
    used: set[str] = set()
    for i, f in enumerate(sd.fields):
        path = (*prefix, i)
        if not _on_wire(f, version) or path in choice.absent:
            continue
        name = unique_name(f.name, used)
        num, num_field = counts.get(path, (f.num, None))
        if num_field is not None:
            num = None
        if f.struct is not None:
            nested = build(f.struct, choice, f.struct.version_id, path)
            fields.append(field(name, "struct", num=num, num_field=num_field, struct=nested))
        elif f.name.startswith("unused"):
            fields.append(field(name, "unused_buffer", size=f.size, num=num, num_field=num_field))
        else:
            info = _INTS.get(f.size, "buffer")
            fields.append(field(name, info, size=f.size, num=num, num_field=num_field))
    subs = tuple(
        build(s, choice, s.version_id, (*prefix, -1 - k)) for k, s in enumerate(sd.subsections)
    )
    return describe(
        sd.name,
        fields,
        version_id=sd.version_id,
        minimum_version_id=sd.minimum_version_id,
        subsections=subs,
    )


def _static_size(sd: SchemaVmsd, choice: Choice, version: int, prefix: Path_ = ()) -> int | None:
    """Wire size of a description's fields under ``choice`` (None if it varies)."""
    counts = {p: n for p, n, _ in choice.counts}
    total = 0
    for i, f in enumerate(sd.fields):
        path = (*prefix, i)
        if not _on_wire(f, version) or path in choice.absent:
            continue
        n = counts.get(path, f.num if f.num is not None else 1)
        if f.struct is not None:
            if f.struct.subsections:
                return None
            each = _static_size(f.struct, choice, f.struct.version_id, path)
            if each is None:
                return None
        else:
            each = f.size
        total += n * each
    return total


def array_choices(
    sd: SchemaVmsd,
    base: Choice,
    r: QEMUFileReader,
    start: int,
    version: int,
    boundary_ok: Callable[[QEMUFileReader], bool],
) -> Iterator[Choice]:
    """One field as an array whose length fills the bytes up to a boundary."""
    fixed = _static_size(sd, base, version)
    if fixed is None:
        return
    end_fields = start + fixed
    sizes: list[tuple[Path_, SchemaField, int]] = []
    for path, f, single in walk_entry(sd, version, (), True):
        if (
            not single
            or path in base.absent
            or any(path[:j] in base.absent for j in range(len(path)))
        ):
            continue
        each = (
            f.size if f.struct is None else _static_size(f.struct, base, f.struct.version_id, path)
        )
        if each and f.num is None:
            sizes.append((path, f, each))
    if not sizes:
        return
    widest = max(s for _, _, s in sizes)
    ends = _field_ends(r, end_fields - widest, sd.name, boundary_ok)
    values = _top_values(sd, base, r, start, version)
    for q in ends:
        slack = q - end_fields
        for path, _f, each in sizes:
            if slack == 0 or slack % each or slack < -each:
                continue
            count = 1 + slack // each
            if count > LIMITS.max_array_elements:
                continue
            # VMS_VARRAY_*: an earlier top-level integer already says the length.
            num_field = next(
                (name for i, name, v in values if len(path) == 1 and i < path[0] and v == count),
                None,
            )
            yield Choice(base.absent, ((path, count, num_field),))


def _field_ends(
    r: QEMUFileReader, low: int, name: str, boundary_ok: Callable[[QEMUFileReader], bool]
) -> list[int]:
    """Positions at or after ``low`` where the top-level fields may end."""
    low = max(low, r.pos)
    hi = min(r.end, low + _SCAN_BYTES)
    view = r.view
    out: list[int] = []
    sub = re.compile(
        byte_class((SectionType.SUBSECTION,))
        + rb"[\x01-\xff]"
        + re.escape((name + "/").encode("utf-8", "surrogateescape"))
    )
    m = sub.search(view, low, hi)
    if m is not None:
        out.append(m.start())
    probe = QEMUFileReader(view, 0, r.end)
    for checks, m in enumerate(_MARKERS.finditer(view, low, hi)):
        if checks >= _SCAN_CHECKS or len(out) >= _MAX_BOUNDARIES:
            break
        probe.pos = m.start()
        if boundary_ok(probe):
            out.append(m.start())
    return sorted(set(out))


def _top_values(
    sd: SchemaVmsd, base: Choice, r: QEMUFileReader, start: int, version: int
) -> list[tuple[int, str, int]]:
    """(schema index, field name, value) of the leading top-level integers read as singles.

    Reading stops at the first field whose size is not static; the values
    before any array are right whatever length that array turns out to have.
    """
    out: list[tuple[int, str, int]] = []
    used: set[str] = set()
    pos, view = start, r.view
    for i, f in enumerate(sd.fields):
        if not _on_wire(f, version) or (i,) in base.absent:
            continue
        name = unique_name(f.name, used)
        each = (
            f.size if f.struct is None else _static_size(f.struct, base, f.struct.version_id, (i,))
        )
        if each is None or pos + each > r.end:
            break
        if (
            f.struct is None
            and f.num is None
            and f.size in _INTS
            and not f.name.startswith("unused")
        ):
            out.append((i, name, int.from_bytes(view[pos : pos + each], "big")))
        pos += each * (f.num if f.num is not None else 1)
    return out
