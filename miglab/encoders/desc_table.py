"""The description table of a plain tree: each distinct description once, by index.

A stream repeats a few dozen descriptions (the types: u8 vs u32, signedness,
counts) over hundreds of sections, so the plain tree (:mod:`miglab.encoders.tree`)
carries each once and refers to it by index (``DREF``).  Deduplication is by
value; a description only refers to earlier ones, so :func:`read_descs`
rebuilds the table in one pass and cannot loop.  Both directions cache: the
writer's templates per description object, the reader's whole tables by
their exact serialized form (streams of one QEMU and machine carry the same
table).

Field ``exists`` predicates are code, not data, and cannot be carried: a
description with one is refused with an :class:`~miglab.errors.EncodingError`.
"""

from __future__ import annotations

import marshal
from typing import Any

from miglab.encoders.plain_items import (
    read_bool,
    read_int,
    read_list,
    read_opt_int,
    read_text,
    wire_text,
)
from miglab.errors import EncodingError
from miglab.vmstate.description import INFO_TYPES, VMStateDescription, VMStateField

__all__ = ("DescTable", "desc_at", "read_descs", "table_for")


_Template = tuple[int, list[Any], list[tuple[list[Any], Any, Any]], tuple[VMStateDescription, ...]]
_TEMPLATES: dict[int, tuple[VMStateDescription, _Template]] = {}
_GIDS: dict[Any, int] = {}
_MAX_TABLES = 256


def _template(d: VMStateDescription) -> _Template:
    """A description's table entry with child descriptions left as objects.

    Computed once per description object; ``gid`` numbers equal descriptions
    equally (a structural key over the children's gids), so deduplication by
    value costs one dict lookup per description and stream.
    """
    hit = _TEMPLATES.get(id(d))
    if hit is not None and hit[0] is d:
        return hit[1]
    fields: list[tuple[list[Any], Any, Any]] = []
    keys: list[Any] = []
    for f in d.fields:
        if f.exists is not None:
            raise EncodingError(
                "field has an 'exists' predicate (code), which no wire format can carry",
                path=f"{d.name}.{f.name}",
            )
        kind0, _, signed0, check0 = INFO_TYPES.get(f.info, ("bytes", 0, False, None))
        entry: list[Any] = [
            wire_text(f.name),
            f.info,
            f.size,
            f.num,
            f.num_field,
            f.size_field,
            0 if f.struct is not None else None,  # placeholders for per-stream refs
            [] if f.elements is not None else None,
            f.version_id or None,
        ]
        if (f.kind, f.signed, f.check) != (kind0, signed0, check0):
            entry += [f.kind, f.signed, f.check]
        while entry[-1] is None:
            entry.pop()
        fields.append((entry, f.struct, f.elements))
        keys.append(
            (
                tuple(x for i, x in enumerate(entry) if i not in (6, 7)),
                _template(f.struct)[0] if f.struct is not None else None,
                tuple(_template(e)[0] for e in f.elements) if f.elements is not None else None,
            )
        )
    head = [wire_text(d.name), d.version_id, d.minimum_version_id]
    key = (tuple(head), tuple(keys), tuple(_template(s)[0] for s in d.subsections))
    if len(_TEMPLATES) > 65536:
        _TEMPLATES.clear()
        _GIDS.clear()
        _WRITTEN.clear()  # keyed by gids, which now start again
    gid = _GIDS.setdefault(key, len(_GIDS))
    t: _Template = (gid, head, fields, d.subsections)
    _TEMPLATES[id(d)] = (d, t)  # the desc is kept so its id stays unique
    return t


class DescTable:
    """The table a plain tree is written with: ``table[ref]`` is a ``DESC`` row."""

    def __init__(self) -> None:
        self.table: list[Any] = []
        self.by_gid: dict[int, int] = {}

    def ref(self, d: VMStateDescription) -> int:
        """The index of ``d`` in the table, adding it (and its children first) if new."""
        gid, head, fields_tpl, subsections = _template(d)
        ref = self.by_gid.get(gid)
        if ref is not None:
            return ref
        fields = []
        for entry, struct_, elements in fields_tpl:
            if struct_ is None and elements is None:
                fields.append(entry)  # shared with the template: nothing per-stream in it
                continue
            e = list(entry)
            if struct_ is not None:
                e[6] = self.ref(struct_)
            if elements is not None:
                e[7] = [self.ref(x) for x in elements]
            fields.append(e)
        subs = [self.ref(s) for s in subsections]
        ref = len(self.table)
        self.table.append([*head, fields, subs])
        self.by_gid[gid] = ref
        return ref


# Whole tables written so far, keyed by the gids of the descriptions in the
# order a stream refers to them: streams of one QEMU and machine (and every
# encoding of one stream) write the same table.
_WRITTEN: dict[tuple[int, ...], tuple[list[Any], tuple[int, ...]]] = {}


def table_for(descs: list[VMStateDescription]) -> tuple[list[Any], tuple[int, ...]]:
    """The table that ``DescTable().ref`` of each of ``descs`` in turn builds, and the refs.

    Cached by structure (the same descriptions in the same order give the
    same table), so a stream's table costs one lookup per description.

    Raises:
        EncodingError: a description carries code (``exists``).
    """
    key = tuple(_template(d)[0] for d in descs)
    hit = _WRITTEN.get(key)
    if hit is None:
        t = DescTable()
        hit = (t.table, tuple(t.ref(d) for d in descs))
        if len(_WRITTEN) >= _MAX_TABLES:
            _WRITTEN.clear()
        _WRITTEN[key] = hit
    return list(hit[0]), hit[1]


def desc_at(x: Any, table: list[VMStateDescription], what: str) -> VMStateDescription:
    """The description ``x`` refers to (a checked index into ``table``)."""
    return table[read_int(x, what, 0, len(table) - 1)] if table else _no_desc(what)


def _no_desc(what: str) -> VMStateDescription:
    raise EncodingError(f"{what} refers to a description but the table is empty")


# Decoded descriptions and fields, shared between decoded streams (they are
# immutable).  Keys hold the raw items, with children as the ids of cached
# objects that the cached value itself keeps alive.
_DESC_CACHE: dict[Any, VMStateDescription] = {}
_FIELD_CACHE: dict[Any, VMStateField] = {}


# Whole description tables decoded so far, keyed by their exact serialized form
# (``marshal``: fast, and ``True``/``1``/``1.0`` differ): streams of one QEMU and
# machine carry the same table, and the table only refers to itself.
_TABLES: dict[bytes, tuple[VMStateDescription, ...]] = {}


def read_descs(raw: Any) -> list[VMStateDescription]:
    """The descriptions a tree's ``descs`` item holds, checked, in table order.

    Raises:
        EncodingError: a row or field does not have the shape the writer makes.
    """
    try:
        key: bytes | None = marshal.dumps(raw, 2)
    except ValueError:  # nested too deeply for marshal; the walk below says what is wrong
        key = None
    hit = _TABLES.get(key) if key is not None else None
    if hit is not None:
        return list(hit)
    table = _build_descs(raw)
    if key is not None:
        if len(_TABLES) >= _MAX_TABLES:
            _TABLES.clear()
        _TABLES[key] = tuple(table)
    return table


def _build_descs(raw: Any) -> list[VMStateDescription]:
    table: list[VMStateDescription] = []
    if len(_DESC_CACHE) + len(_FIELD_CACHE) > 65536:
        _DESC_CACHE.clear()
        _FIELD_CACHE.clear()
    for i, d in enumerate(read_list(raw, "descs")):
        d = read_list(d, f"descs[{i}]")
        if len(d) != 5:
            raise EncodingError(f"descs[{i}] must have 5 items, got {len(d)}")
        fields = tuple(
            _cached_field(f, table, f"descs[{i}].fields[{j}]")
            for j, f in enumerate(read_list(d[3], "fields"))
        )
        subs = tuple(
            desc_at(r, table, f"descs[{i}] subsection") for r in read_list(d[4], "subsections")
        )
        key = (d[0], d[1], d[2], tuple(map(id, fields)), tuple(map(id, subs)))
        desc = _DESC_CACHE.get(key)
        if desc is None:
            name = read_text(d[0], f"descs[{i}] name")
            desc = VMStateDescription(
                name=name,
                version_id=read_int(d[1], f"{name} version_id"),
                minimum_version_id=read_int(d[2], f"{name} minimum_version_id"),
                fields=fields,
                subsections=subs,
            )
            _DESC_CACHE[key] = desc
        table.append(desc)
    return table


def _cached_field(raw: Any, table: list[VMStateDescription], where: str) -> VMStateField:
    if type(raw) is not list:
        raise EncodingError(f"{where} must be a list")
    if len(raw) > 6 and (raw[6] is not None or (len(raw) > 7 and raw[7] is not None)):
        s = desc_at(raw[6], table, where) if raw[6] is not None else None
        el = raw[7] if len(raw) > 7 else None
        elems = (
            tuple(desc_at(r, table, where) for r in read_list(el, where))
            if el is not None
            else None
        )
        key: Any = (
            tuple(raw[:6]),
            id(s),
            None if elems is None else tuple(map(id, elems)),
            tuple(raw[8:]),
        )
    else:
        key = tuple(raw)
    f = _FIELD_CACHE.get(key)
    if f is None:
        f = _FIELD_CACHE[key] = _field(raw, table, where)
    return f


# The widths QEMU's VMState types have (int8..uint64, bool, float64).
_SIZES: dict[str, tuple[int, ...]] = {"int": (1, 2, 4, 8), "bool": (1,), "float": (8,)}


def _field(raw: Any, table: list[VMStateDescription], where: str) -> VMStateField:
    f = read_list(raw, where)
    if not 2 <= len(f) <= 12:
        raise EncodingError(f"{where} must have 2..12 items, got {len(f)}")
    f = f + [None] * (12 - len(f))
    info = f[1]
    if not isinstance(info, str):
        raise EncodingError(f"{where} info must be text")
    kind0, _, signed0, check0 = INFO_TYPES.get(info, ("bytes", 0, False, None))
    kind = kind0 if f[9] is None else f[9]
    if kind not in ("int", "bool", "float", "bytes", "str", "null", "struct"):
        raise EncodingError(f"{where} has unknown kind {kind!r:.40}")
    check = check0 if f[9] is None else f[11]
    if check not in (None, "equal", "le"):
        raise EncodingError(f"{where} has unknown check {check!r:.40}")
    struct_ = desc_at(f[6], table, where) if f[6] is not None else None
    elements = (
        tuple(desc_at(r, table, where) for r in read_list(f[7], where))
        if f[7] is not None
        else None
    )
    if kind == "struct" and struct_ is None:
        raise EncodingError(f"{where} is a struct without a description")
    for ref in (f[4], f[5]):
        if ref is not None and not isinstance(ref, str):
            raise EncodingError(f"{where} count/size field must be a name")
    if kind in _SIZES and f[2] not in _SIZES[kind]:
        # A wider integer is written out from one small number (2**32 bytes from a 7 KB tree).
        raise EncodingError(f"{where} is {f[2]!r:.20} bytes wide; a QEMU {kind} is {_SIZES[kind]}")
    return VMStateField(
        name=read_text(f[0], where),
        info=info,
        kind=kind,
        size=read_int(f[2], f"{where} size", 0, 1 << 32),
        signed=signed0 if f[9] is None else read_bool(f[10], f"{where} signed"),
        check=check,
        num=read_opt_int(f[3], f"{where} num"),
        num_field=f[4],
        size_field=f[5],
        struct=struct_,
        elements=elements,
        version_id=read_int(f[8] or 0, f"{where} version_id"),
    )
