"""The ASN.1 modules of ``asn1-ber``/``asn1-per``: one generated from the descriptions, one fixed.

A stream's descriptions *are* its types, so the module a stream is encoded
with is generated from them (:func:`stream_module`): one ``SEQUENCE`` per
description (device type and version) whose components are the fields,
each typed from the description -- ``INTEGER (0..4294967295)`` for a
``uint32``, ``OCTET STRING (SIZE(16))`` for a fixed buffer, ``SEQUENCE
(SIZE(128)) OF ...`` for a fixed array, the nested struct's type;
subsections, and fields newer than the oldest version, ``OPTIONAL`` --
plus the typed record layer around the states (``Stream``, ``Section``,
``Ram`` runs of page records, ``Command``).  Because every integer has its
range, aligned PER writes a ``uint8`` in one octet and a bool in one bit.

The descriptions themselves travel in front of the stream's value, typed by
the fixed module :data:`DESCRIPTIONS` (``Descriptions``), so a decoder
regenerates the stream's module from them instead of receiving it.

Component names are the field names made into ASN.1 identifiers
injectively (:func:`identifier`: ``mac_reg[0]`` is ``mmac-5freg-5b0-5d``).

A module generated from hostile descriptions could make asn1tools loop
without reading input (an array of a type that encodes in zero bits), so
:func:`stream_module` refuses descriptions whose fixed arrays unroll to more
than :data:`miglab.limits.LIMITS` ``max_array_elements`` elements, and
variable-length arrays of zero-width elements.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import lru_cache
from typing import Any

from miglab.encoders.asn1_types import (
    DESCRIPTION_COMMENTS,
    DESCRIPTION_TYPES,
    RECORD_COMMENTS,
    RECORD_TYPES,
    Module,
    Spec,
    choice,
    integer,
    member,
    ref,
    seq,
    seq_of,
)
from miglab.encoders.plain_items import read_int, read_list
from miglab.errors import EncodingError
from miglab.limits import LIMITS
from miglab.visitors.base import int_range
from miglab.vmstate.description import INFO_TYPES, VMStateDescription, VMStateField

__all__ = (
    "DESCRIPTIONS",
    "STREAM_MODULE_NAME",
    "desc_rows",
    "desc_values",
    "field_indexes",
    "identifier",
    "schema_id",
    "stream_module",
    "with_indexes",
)

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_INFOS = tuple(INFO_TYPES)
_INFO_INDEX = {name: i for i, name in enumerate(_INFOS)}


@lru_cache(maxsize=1 << 16)
def identifier(name: str) -> str:
    """The ASN.1 identifier of a member name: ``m`` then the name, other bytes as ``-hh``.

    Injective (so members stay apart), always a valid identifier (a lower
    case first letter, no two hyphens in a row, none at the end).
    """
    out = ["m"]
    for ch in name:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"-{b:02x}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def schema_id(text: str) -> bytes:
    """The 8-byte id of a module text (the first bytes of its sha256)."""
    return hashlib.sha256(text.encode()).digest()[:8]


# --- the descriptions, typed by a fixed module --------------------------------------

DESCRIPTIONS = Module("MiglabDescriptions", DESCRIPTION_TYPES, DESCRIPTION_COMMENTS)
"""The fixed module of the description table (``Descriptions``): what
:mod:`miglab.encoders.desc_table` writes as lists, with its types."""

_FIELD_KEYS = ("num", "num-field", "size-field", "struct", "elements", "version")


def _name(x: str | bytes) -> tuple[str, Any]:
    return ("raw", x) if isinstance(x, bytes) else ("text", x)


def desc_values(rows: list[Any], indexes: dict[tuple[int, int], int]) -> list[dict[str, Any]]:
    """The ``Descriptions`` value of a description table (rows of ``desc_table.table_for``)
    and the fields' vmdesc ``index`` (by row and field), which the rows do not carry."""
    out = []
    for i, (name, version, minimum, fields, subs) in enumerate(rows):
        typed = []
        for j, f in enumerate(fields):
            f = list(f) + [None] * (12 - len(f))
            info = f[1]
            v: dict[str, Any] = {
                "name": _name(f[0]),
                "info": ("known", _INFO_INDEX[info]) if info in _INFO_INDEX else ("other", info),
                "size": f[2],
            }
            for key, x in zip(_FIELD_KEYS, f[3:9], strict=True):
                if x is not None:
                    v[key] = x
            if f[9] is not None:
                v["type"] = {"kind": f[9], "signed": f[10]}
                if f[11] is not None:
                    v["type"]["check"] = f[11]
            if (i, j) in indexes:
                v["index"] = indexes[i, j]
            typed.append(v)
        out.append(
            {
                "name": _name(name),
                "version": version,
                "minimum-version": minimum,
                "fields": typed,
                "subsections": list(subs),
            }
        )
    return out


def desc_rows(values: Any) -> tuple[list[Any], dict[tuple[int, int], int]]:
    """The description table rows a decoded ``Descriptions`` value holds (for ``read_descs``),
    and the fields' vmdesc ``index`` (for :func:`with_indexes`).

    Raises:
        EncodingError: an info index names no known VMStateInfo type.
    """
    rows = []
    indexes: dict[tuple[int, int], int] = {}
    for i, d in enumerate(read_list(values, "descriptions")):
        fields = []
        for j, f in enumerate(d["fields"]):
            if "index" in f:
                indexes[i, j] = f["index"]
            kind, info = f["info"]
            if kind == "known":
                info = _INFOS[read_int(info, f"descs[{i}] info", 0, len(_INFOS) - 1)]
            row = [f["name"][1], info, f["size"], *(f.get(k) for k in _FIELD_KEYS)]
            t = f.get("type")
            row += [None, None, None] if t is None else [t["kind"], t["signed"], t.get("check")]
            fields.append(row)
        rows.append(
            [d["name"][1], d["version"], d["minimum-version"], fields, list(d["subsections"])]
        )
    return rows, indexes


def field_indexes(
    table: list[VMStateDescription], tops: list[tuple[VMStateDescription, int]]
) -> dict[tuple[int, int], int]:
    """The vmdesc ``index`` of the fields of ``table`` (descriptions as read back from rows),
    taken from the original descriptions ``tops`` (each with its row)."""
    rows = {id(d): i for i, d in enumerate(table)}
    out: dict[tuple[int, int], int] = {}
    seen: set[int] = set()

    def walk(orig: VMStateDescription, row: int) -> None:
        if row in seen:
            return
        seen.add(row)
        back = table[row]
        for j, (f, g) in enumerate(zip(orig.fields, back.fields, strict=True)):
            if f.index is not None:
                out[row, j] = f.index
            if f.struct is not None and g.struct is not None:
                walk(f.struct, rows[id(g.struct)])
            for e, b in zip(f.elements or (), g.elements or (), strict=True):
                walk(e, rows[id(b)])
        for sd, sb in zip(orig.subsections, back.subsections, strict=True):
            walk(sd, rows[id(sb)])

    for d, row in tops:
        walk(d, row)
    return out


def with_indexes(
    table: list[VMStateDescription], indexes: dict[tuple[int, int], int]
) -> list[VMStateDescription]:
    """``table`` with each field's vmdesc ``index`` set (new descriptions where one changes)."""
    if not indexes:
        return table
    new: dict[int, VMStateDescription] = {}
    out = []
    for i, d in enumerate(table):
        fields = []
        for j, f in enumerate(d.fields):
            changes: dict[str, Any] = {}
            if (i, j) in indexes:
                changes["index"] = read_int(indexes[i, j], f"{d.name}.{f.name} index")
            if f.struct is not None and id(f.struct) in new:
                changes["struct"] = new[id(f.struct)]
            if f.elements is not None and any(id(e) in new for e in f.elements):
                changes["elements"] = tuple(new.get(id(e), e) for e in f.elements)
            fields.append(dataclasses.replace(f, **changes) if changes else f)
        subs = tuple(new.get(id(s), s) for s in d.subsections)
        if any(a is not b for a, b in zip(fields, d.fields, strict=True)) or any(
            a is not b for a, b in zip(subs, d.subsections, strict=True)
        ):
            new[id(d)] = dataclasses.replace(d, fields=tuple(fields), subsections=subs)
        out.append(new.get(id(d), d))
    return out


# --- the stream's module, generated from its descriptions ----------------------------

_OCTETS_8 = ref("OCTET STRING", 8)  # a float64's IEEE-754 bits, exactly
_MARKER = integer(0, 255)  # the nullptr marker byte


def _one(f: VMStateField, index: dict[int, int]) -> Spec:
    """The type of one element of field ``f``."""
    kind = f.kind
    if kind == "int":
        return integer(*int_range(f.size, f.signed)) if f.size > 0 else integer()
    if kind == "bool":
        return ref("BOOLEAN")
    if kind == "float":
        return dict(_OCTETS_8)
    if kind == "bytes":
        return ref("OCTET STRING", None if f.size_field is not None else f.size)
    if kind == "str":
        return ref("UTF8String")
    if kind == "null":
        return dict(_MARKER)
    assert f.struct is not None
    return ref(f"T{index[id(f.struct)]}")


def _field_type(f: VMStateField, index: dict[int, int]) -> Spec:
    if f.elements is not None:
        return seq(*(member(f"e{i}", ref(f"T{index[id(e)]}")) for i, e in enumerate(f.elements)))
    if f.num_field is not None:
        return seq_of(_one(f, index))
    if f.num is not None:
        return seq_of(_one(f, index), f.num)
    return _one(f, index)


class _Bounds:
    """Per description: whether its type can encode in zero bits, and its unrolled elements."""

    def __init__(self) -> None:
        self.zero: dict[int, bool] = {}
        self.elements: dict[int, int] = {}

    def check(self, d: VMStateDescription) -> None:
        zero, total = not d.subsections, 0  # each subsection has a presence bit
        for f in d.fields:
            if f.version_id > 0:
                zero = False  # OPTIONAL: a presence bit
            if f.elements is not None:
                one_zero = all(self.zero[id(e)] for e in f.elements)
                one = sum(self.elements[id(e)] for e in f.elements)
            elif f.struct is not None:
                one_zero, one = self.zero[id(f.struct)], self.elements[id(f.struct)]
            else:
                # only a fixed OCTET STRING (SIZE(0)) takes no bits
                one_zero = f.kind == "bytes" and f.size_field is None and f.size == 0
                one = 1
            if f.num_field is not None:
                if one_zero:
                    raise EncodingError(
                        "a variable-length array of elements that take no bits",
                        path=f"{d.name}.{f.name}",
                    )
                zero, n = False, 1
            else:
                n = f.num if f.num is not None else 1
                zero = zero and (one_zero or n == 0)
            total += n * one
            if total > LIMITS.max_array_elements:
                raise EncodingError(
                    f"unrolls to more than {LIMITS.max_array_elements} elements",
                    path=f"{d.name}.{f.name}",
                )
        self.zero[id(d)], self.elements[id(d)] = zero, max(total, 1)


STREAM_MODULE_NAME = "MiglabStream"


def stream_module(table: list[VMStateDescription]) -> Module:
    """The module a stream with description table ``table`` is encoded with.

    Raises:
        EncodingError: the descriptions would make a decoder loop without
            reading input (see the module docstring).
    """
    index = {id(d): i for i, d in enumerate(table)}
    bounds = _Bounds()
    states = [member(f"t{i}", ref(f"T{i}")) for i in range(len(table))]
    types = dict(RECORD_TYPES)
    types["State"] = choice(*states) if states else choice(member("none", ref("NULL")))
    comments = dict(RECORD_COMMENTS)
    comments["State"] = "a device state: one alternative per description, T<n> for row n"
    for i, d in enumerate(table):
        bounds.check(d)
        members = [
            member(identifier(f.name), _field_type(f, index), optional=f.version_id > 0)
            for f in d.fields
        ]
        members += [
            member(identifier(sd.name), ref(f"T{index[id(sd)]}"), optional=True)
            for sd in d.subsections
        ]
        types[f"T{i}"] = seq(*members)
        name = d.name.encode("ascii", "replace").decode().replace("--", "- -")
        comments[f"T{i}"] = f"{name} version {d.version_id}"
    return Module(STREAM_MODULE_NAME, types, comments)
