"""Descriptions from a ``-dump-vmstate`` schema, for streams without a vmdesc.

A schema (QEMU-FORMAT.md 4.1) lists every device class's vmsd: field names,
versions, element sizes, nested descriptions and subsections, but no type
names, no ``needed``/``field_exists`` predicates and, before QEMU 8.1, no
array lengths.  So one schema entry stands for a small family of possible
wire layouts.  :class:`SchemaIndex` turns an entry into candidate
:class:`~miglab.vmstate.description.VMStateDescription` objects and keeps
the first whose decode ends exactly where the section must end (the caller's
``boundary_ok``), trying in order:

1. predicated fields (``field_exists: true``) present, then with one, two...
   of them absent;
2. every field as a single element (or ``num`` elements when the schema
   gives ``num``), then one field as an array whose length is inferred from
   the bytes left before the next subsection or record boundary.  When an
   earlier integer field holds that length the array is taken as QEMU's
   ``VMS_VARRAY`` of that field, else as a fixed array.

Sizes map to ``uint8``/``uint16``/``uint32``/``uint64`` (``unused*`` fields
to ``unused_buffer``), other sizes to buffers, nested descriptions to
structs.  At most :data:`MAX_CANDIDATES` decodes are tried per section, so a
hostile stream or schema costs bounded time; what no candidate fits stays
opaque.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from miglab.errors import DescriptionError, LimitExceeded, MiglabError
from miglab.limits import LIMITS
from miglab.visitors.qemufile import QEMUFileReader
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor
from miglab.vmstate.description import (
    VMStateDescription,
    VMStateField,
    describe,
    field,
    unique_name,
)
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("MAX_CANDIDATES", "SchemaIndex")

MAX_CANDIDATES = 64  # decodes tried per section
_MAX_BOUNDARIES = 8  # record boundaries / subsection starts considered per layout
_SCAN_BYTES = 1 << 20  # how far past the single-element layout a boundary is looked for
_SCAN_CHECKS = 20000  # boundary_ok calls per scan
_INTS = {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}
_MARKERS = re.compile(rb"[\x00-\x04\x08\x7e]")

Path_ = tuple[int, ...]  # field indices from the top description down


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    version_id: int
    exists: bool  # has a field_exists predicate whose value the schema does not give
    size: int
    num: int | None
    desc: _Desc | None


@dataclass(frozen=True, slots=True)
class _Desc:
    name: str
    version_id: int
    minimum_version_id: int
    fields: tuple[_Field, ...]
    subsections: tuple[_Desc, ...]


@dataclass(frozen=True, slots=True)
class _Choice:
    """One candidate layout: absent predicated fields, array lengths."""

    absent: frozenset[Path_] = frozenset()
    counts: tuple[tuple[Path_, int, str | None], ...] = ()  # (path, count, count field name)


class SchemaIndex:
    """A ``-dump-vmstate`` schema indexed by vmsd name, decoding sections by trial.

    Example:
        >>> idx = SchemaIndex.load("data/schema-7.2-pc-i440fx-2.2.json")
        >>> "mc146818rtc" in idx.names()
        True
    """

    def __init__(self, entries: Mapping[str, list[_Desc]], machine: str | None) -> None:
        self._entries = dict(entries)
        self.machine = machine

    @classmethod
    def load(
        cls,
        schema: str | os.PathLike[str] | Mapping[str, Any] | SchemaIndex,
        *,
        hints: str | os.PathLike[str] | Mapping[str, Any] | SchemaIndex | None = None,
    ) -> SchemaIndex:
        """Parse a schema file (path) or its already-parsed JSON object.

        Args:
            schema: the ``-dump-vmstate`` output of the QEMU that wrote the
                stream (an index passes through unchanged, so ``load(...,
                schema=SchemaIndex.load(..., hints=...))`` works).
            hints: optionally a schema of another QEMU build that gives array
                lengths (``num``, QEMU >= 8.1).  Fields of ``schema`` without
                ``num`` take the ``num`` of the field with the same vmsd,
                name and element size there; the decode still has to end at
                the record boundary, so a wrong hint only costs a candidate.

        Raises:
            DescriptionError: not JSON, or not the ``-dump-vmstate`` shape.
            LimitExceeded: larger than ``LIMITS.max_schema_bytes`` or nested
                deeper than ``LIMITS.max_depth``.
        """
        if isinstance(schema, SchemaIndex):
            return schema
        if isinstance(schema, str | os.PathLike):
            path = Path(schema)
            try:
                size = path.stat().st_size
                if size > LIMITS.max_schema_bytes:
                    raise LimitExceeded(
                        f"schema of {size} bytes exceeds the limit of {LIMITS.max_schema_bytes}",
                        path=str(path),
                    )
                raw = path.read_bytes()
            except OSError as exc:
                raise DescriptionError(
                    f"cannot read schema: {exc.strerror or exc}", path=str(path)
                ) from None
            try:
                schema = json.loads(raw)
            except RecursionError:
                raise LimitExceeded("schema JSON nested too deeply", path=str(path)) from None
            except ValueError as exc:
                raise DescriptionError(f"schema is not JSON ({exc})", path=str(path)) from None
        if not isinstance(schema, Mapping):
            raise DescriptionError("schema must be a JSON object of device classes")
        entries: dict[str, list[_Desc]] = {}
        machine = None
        for key, entry in schema.items():
            if key == "vmschkmachine":
                machine = entry.get("Name") if isinstance(entry, Mapping) else None
                continue
            if not isinstance(entry, Mapping) or not isinstance(entry.get("Description"), Mapping):
                raise DescriptionError(
                    f"schema entry {key!r} has no 'Description' object", path=str(key)
                )
            desc = _parse_desc(entry["Description"], str(key), 0)
            cls_name = entry.get("Name")
            names = {desc.name, cls_name} if isinstance(cls_name, str) else {desc.name}
            for name in names:
                known = entries.setdefault(name, [])
                if desc not in known:
                    known.append(desc)
        index = cls(entries, machine if isinstance(machine, str) else None)
        if hints is not None:
            index._apply_hints(hints if isinstance(hints, SchemaIndex) else cls.load(hints))
        return index

    def _apply_hints(self, hints: SchemaIndex) -> None:
        nums: dict[tuple[str, str, int], set[int]] = {}
        for descs in hints._entries.values():
            for d in descs:
                _collect_nums(d, nums, 0)
        known = {k: next(iter(v)) for k, v in nums.items() if len(v) == 1}
        self._entries = {
            name: [_with_nums(d, known, 0) for d in descs] for name, descs in self._entries.items()
        }

    def names(self) -> frozenset[str]:
        """Every vmsd and class name the schema describes."""
        return frozenset(self._entries)

    def lookup(self, idstr: str) -> list[_Desc]:
        """The schema descriptions a section idstr may follow (by vmsd name, then class name)."""
        tail = idstr.rsplit("/", 1)[-1]
        return list(self._entries.get(tail, ())) or list(self._entries.get(idstr, ()))

    def decode(
        self,
        r: QEMUFileReader,
        idstr: str,
        version_id: int,
        boundary_ok: Callable[[QEMUFileReader], bool],
    ) -> VMState | None:
        """Decode the section payload at ``r.pos`` with the first layout that fits.

        Returns the state with ``r.pos`` just past the payload, or None with
        ``r.pos`` unchanged when the schema has no entry or no candidate
        layout ends where ``boundary_ok`` accepts.
        """
        start = r.pos
        budget = MAX_CANDIDATES
        for sdesc in self.lookup(idstr):
            if not sdesc.minimum_version_id <= version_id <= sdesc.version_id:
                continue
            predicated = [p for p, f, _ in _walk(sdesc, version_id, (), True) if f.exists]
            for k in range(len(predicated) + 1):
                for absent in itertools.combinations(predicated, k):
                    if budget <= 0:
                        r.pos = start
                        return None
                    base = _Choice(frozenset(absent))
                    budget -= 1
                    state = _try(sdesc, base, r, start, version_id, idstr, boundary_ok)
                    if state is not None:
                        return state
                    fits: list[tuple[_Choice, VMState, int]] = []
                    for choice in _array_choices(sdesc, base, r, start, version_id, boundary_ok):
                        if budget <= 0:
                            break
                        budget -= 1
                        state = _try(sdesc, choice, r, start, version_id, idstr, boundary_ok)
                        if state is not None:
                            fits.append((choice, state, r.pos))
                    chosen = _unambiguous(fits)
                    if chosen is not None:
                        r.pos = chosen[2]
                        return chosen[1]
                    if fits:  # several layouts fit equally well: keep the bytes opaque
                        r.pos = start
                        return None
        r.pos = start
        return None


def _unambiguous(
    fits: list[tuple[_Choice, VMState, int]],
) -> tuple[_Choice, VMState, int] | None:
    """The one fitting array layout, or the one a count field vouches for."""
    if len(fits) == 1:
        return fits[0]
    vouched = [f for f in fits if any(nf is not None for _, _, nf in f[0].counts)]
    return vouched[0] if len(vouched) == 1 else None


# --- parsing -------------------------------------------------------------------


def _int(obj: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DescriptionError(
            f"schema {where}: {key!r} must be a non-negative integer, got {value!r}", path=where
        )
    return value


def _parse_desc(obj: Any, where: str, depth: int) -> _Desc:
    if depth > LIMITS.max_depth:
        raise LimitExceeded(f"schema nested deeper than {LIMITS.max_depth}", path=where)
    if not isinstance(obj, Mapping):
        raise DescriptionError(f"schema {where}: description must be an object", path=where)
    name = obj.get("name")
    raw_fields = obj.get("Fields", [])
    raw_subs = obj.get("Subsections", [])
    if not isinstance(name, str):
        raise DescriptionError(f"schema {where}: description 'name' must be a string", path=where)
    if not isinstance(raw_fields, list) or not isinstance(raw_subs, list):
        raise DescriptionError(
            f"schema {where}: 'Fields' and 'Subsections' must be lists", path=where
        )
    return _Desc(
        name=name,
        version_id=_int(obj, "version_id", where),
        minimum_version_id=_int(obj, "minimum_version_id", where, 0),
        fields=tuple(_parse_field(f, f"{where}.{name}", depth) for f in raw_fields),
        subsections=tuple(_parse_desc(s, f"{where}.{name}", depth + 1) for s in raw_subs),
    )


def _parse_field(obj: Any, where: str, depth: int) -> _Field:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("field"), str):
        raise DescriptionError(
            f"schema {where}: a field must be an object with a 'field' name", path=where
        )
    name = obj["field"]
    exists = obj.get("field_exists", False)
    if not isinstance(exists, bool):
        raise DescriptionError(
            f"schema {where}.{name}: 'field_exists' must be a boolean", path=where
        )
    num = _int(obj, "num", f"{where}.{name}") if "num" in obj else None
    if num is not None and num > LIMITS.max_array_elements:
        raise LimitExceeded(f"schema {where}.{name}: num {num} exceeds the limit", path=where)
    nested = obj.get("Description")
    return _Field(
        name=name,
        version_id=_int(obj, "version_id", f"{where}.{name}", 0),
        exists=exists,
        size=_int(obj, "size", f"{where}.{name}", 0),
        num=num,
        desc=_parse_desc(nested, f"{where}.{name}", depth + 1) if nested is not None else None,
    )


def _collect_nums(d: _Desc, out: dict[tuple[str, str, int], set[int]], depth: int) -> None:
    for f in d.fields:
        if f.num is not None:
            out.setdefault((d.name, f.name, f.size), set()).add(f.num)
        if f.desc is not None:
            _collect_nums(f.desc, out, depth + 1)
    for sub in d.subsections:
        _collect_nums(sub, out, depth + 1)


def _with_nums(d: _Desc, nums: Mapping[tuple[str, str, int], int], depth: int) -> _Desc:
    fields = tuple(
        replace(
            f,
            num=f.num if f.num is not None else nums.get((d.name, f.name, f.size)),
            desc=_with_nums(f.desc, nums, depth + 1) if f.desc is not None else None,
        )
        for f in d.fields
    )
    subs = tuple(_with_nums(sub, nums, depth + 1) for sub in d.subsections)
    return replace(d, fields=fields, subsections=subs)


# --- candidate layouts ----------------------------------------------------------


def _on_wire(f: _Field, version: int) -> bool:
    # QEMU: with a field_exists predicate the version is not looked at.
    return f.exists or f.version_id <= version


def _walk(
    sd: _Desc, version: int, prefix: Path_, single: bool
) -> Iterator[tuple[Path_, _Field, bool]]:
    """Yield (path, field, in_single_chain) for every field that may be on the wire."""
    for i, f in enumerate(sd.fields):
        if not _on_wire(f, version):
            continue
        path = (*prefix, i)
        yield path, f, single
        if f.desc is not None:
            yield from _walk(f.desc, f.desc.version_id, path, single and f.num is None)


def _build(sd: _Desc, choice: _Choice, version: int, prefix: Path_ = ()) -> VMStateDescription:
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
        if f.desc is not None:
            nested = _build(f.desc, choice, f.desc.version_id, path)
            fields.append(field(name, "struct", num=num, num_field=num_field, struct=nested))
        elif f.name.startswith("unused"):
            fields.append(field(name, "unused_buffer", size=f.size, num=num, num_field=num_field))
        else:
            info = _INTS.get(f.size, "buffer")
            fields.append(field(name, info, size=f.size, num=num, num_field=num_field))
    subs = tuple(
        _build(s, choice, s.version_id, (*prefix, -1 - k)) for k, s in enumerate(sd.subsections)
    )
    return describe(
        sd.name,
        fields,
        version_id=sd.version_id,
        minimum_version_id=sd.minimum_version_id,
        subsections=subs,
    )


def _static_size(sd: _Desc, choice: _Choice, version: int, prefix: Path_ = ()) -> int | None:
    """Wire size of a description's fields under ``choice`` (None if it varies)."""
    counts = {p: n for p, n, _ in choice.counts}
    total = 0
    for i, f in enumerate(sd.fields):
        path = (*prefix, i)
        if not _on_wire(f, version) or path in choice.absent:
            continue
        n = counts.get(path, f.num if f.num is not None else 1)
        if f.desc is not None:
            if f.desc.subsections:
                return None
            each = _static_size(f.desc, choice, f.desc.version_id, path)
            if each is None:
                return None
        else:
            each = f.size
        total += n * each
    return total


def _array_choices(
    sd: _Desc,
    base: _Choice,
    r: QEMUFileReader,
    start: int,
    version: int,
    boundary_ok: Callable[[QEMUFileReader], bool],
) -> Iterator[_Choice]:
    """One field as an array whose length fills the bytes up to a boundary."""
    fixed = _static_size(sd, base, version)
    if fixed is None:
        return
    end_fields = start + fixed
    sizes: list[tuple[Path_, _Field, int]] = []
    for path, f, single in _walk(sd, version, (), True):
        if (
            not single
            or path in base.absent
            or any(path[:j] in base.absent for j in range(len(path)))
        ):
            continue
        each = f.size if f.desc is None else _static_size(f.desc, base, f.desc.version_id, path)
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
            yield _Choice(base.absent, ((path, count, num_field),))


def _field_ends(
    r: QEMUFileReader, low: int, name: str, boundary_ok: Callable[[QEMUFileReader], bool]
) -> list[int]:
    """Positions at or after ``low`` where the top-level fields may end."""
    low = max(low, r.pos)
    hi = min(r.end, low + _SCAN_BYTES)
    view = r.view
    out: list[int] = []
    sub = re.compile(
        rb"\x05[\x01-\xff]" + re.escape((name + "/").encode("utf-8", "surrogateescape"))
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
    sd: _Desc, base: _Choice, r: QEMUFileReader, start: int, version: int
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
        each = f.size if f.desc is None else _static_size(f.desc, base, f.desc.version_id, (i,))
        if each is None or pos + each > r.end:
            break
        if f.desc is None and f.num is None and f.size in _INTS and not f.name.startswith("unused"):
            out.append((i, name, int.from_bytes(view[pos : pos + each], "big")))
        pos += each * (f.num if f.num is not None else 1)
    return out


def _try(
    sd: _Desc,
    choice: _Choice,
    r: QEMUFileReader,
    start: int,
    version: int,
    idstr: str,
    boundary_ok: Callable[[QEMUFileReader], bool],
) -> VMState | None:
    r.pos = start
    try:
        desc = _build(sd, choice, version)
        state = visit_vmstate(QEMUFileInputVisitor(r), desc, None, version, idstr)
    except (MiglabError, RecursionError):
        r.pos = start
        return None
    if boundary_ok(r):
        return state
    r.pos = start
    return None
