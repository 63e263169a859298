"""The stream as a plain tree: the common shape of the self-describing formats.

JSON, CBOR, MessagePack and ASN.1 BER/PER all carry the same *plain tree*:
nested lists, one top-level map, and only ``None``, ``bool``, ``int``,
``str`` and ``bytes`` leaves.  :func:`to_plain` builds it from a
:class:`~miglab.stream.model.Stream`, :func:`from_plain` rebuilds the stream,
checking every item, so that ``from_plain(to_plain(s)).to_bytes() ==
s.to_bytes()`` byte for byte.

Shape (version 1)::

    {"miglab": 1, "version": 3, "page_size": 4096, "eof": True,
     "ignore_shared": False,
     "descs": [DESC, ...],            # each distinct description once
     "configuration": [DREF, STATE] | None,
     "blocks": [[name, used_length, addr | None], ...],
     "records": [RECORD, ...],
     "vmdesc": "<QEMU's JSON text>" | None,
     "trailer": b"..."}

    DESC    = [name, version_id, minimum_version_id, [FIELD...], [DREF...]]
    FIELD   = [name, info, size, num, num_field, size_field, struct DREF,
               [element DREF...], version_id, kind, signed, check]
              (trailing Nones dropped; kind/signed/check only where they
              differ from what ``INFO_TYPES`` says for ``info``)
    STATE   = [version_id, [VALUE per field on the wire], [[sub index, STATE]...]]
    RECORD  = ["S", kind, section_id, name, instance_id, version_id, footer, PAYLOAD]
            | ["C", command, data, [RECORD...] | None]
    PAYLOAD = ["D", DREF, STATE] | ["O", data, reason]
            | ["R", words, named, block, length, data, [[name, len, addr]...] | None]

Descriptions are deduplicated by value and referenced by index (``DREF``);
a description only refers to earlier ones, so the table is rebuilt in one
pass and cannot loop.  Values follow their field's type, so no value needs a
type tag: integer arrays (``mac_reg``'s 32768 u32) travel as one packed
big-endian byte string, floats as their 64 IEEE bits, buffers as bytes.  RAM
chunks travel as packed numpy arrays plus one byte string of all payloads,
so pages stay binary.  Names that are not valid UTF-8 (QEMU idstrs are raw
bytes) travel as bytes and come back through ``surrogateescape``.

Field ``exists`` predicates are code, not data, and cannot be carried: a
description with one is refused with an :class:`~miglab.errors.EncodingError`.
"""

from __future__ import annotations

import json
import marshal
import operator
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from miglab.errors import EncodingError, LimitExceeded, MiglabError
from miglab.limits import LIMITS
from miglab.stream.model import CommandRecord, Opaque, Record, Section, SectionKind, Stream
from miglab.stream.ram import RamBlock, RamContext, RamPayload
from miglab.vmstate.description import INFO_TYPES, VMStateDescription, VMStateField
from miglab.vmstate.layout import paused_gc
from miglab.vmstate.state import VMState

__all__ = ("TREE_VERSION", "from_plain", "guarded", "to_plain")

TREE_VERSION = 1
_KINDS = {k.value[0]: k for k in SectionKind}  # "s", "p", "e", "f"
_F64 = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_DECODE_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    struct.error,
)


def _txt(s: str) -> str | bytes:
    """A name as text when it is valid UTF-8, else as its raw bytes."""
    if s.isascii():
        return s
    try:
        s.encode()
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape")
    return s


def _untxt(x: Any, what: str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", "surrogateescape")
    raise EncodingError(f"{what} must be text, got {type(x).__name__}")


# --- per-description plans ----------------------------------------------------

# Field codes: how a value travels.  _INT and _BOOL values travel as they are.
_INT, _BOOL, _INT_ARRAY, _STRUCT, _STRUCT_ARRAY, _ARRAY, _SCALAR = range(7)
_ARRAY_STRUCTS: dict[tuple[int, int, bool], struct.Struct] = {}
_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
# The exact type of a value in the plain tree, per code (and per kind for _SCALAR).
_PLAIN_TYPES: dict[int, type] = {
    _INT: int,
    _BOOL: bool,
    _INT_ARRAY: bytes,
    _STRUCT: list,
    _STRUCT_ARRAY: list,
    _ARRAY: list,
}
_SCALAR_TYPES: dict[str, type] = {
    "bytes": bytes,
    "float": int,
    "str": str,
    "null": type(None),
}


def _array_struct(count: int, size: int, signed: bool) -> struct.Struct:
    """A big-endian struct for ``count`` integers (cached; QEMU's wire order)."""
    key = (count, size, signed)
    fmt = _ARRAY_STRUCTS.get(key)
    if fmt is None:
        code = _INT_CODES.get(size)
        if code is None:
            raise EncodingError(f"integer arrays of {size}-byte elements are not supported")
        fmt = struct.Struct(f">{count}{code.lower() if signed else code}")
        if len(_ARRAY_STRUCTS) < 4096:
            _ARRAY_STRUCTS[key] = fmt
    return fmt


class _Plan(NamedTuple):
    """How the values of one description at one version travel.

    ``get`` takes the values on the wire, in order, from a state's field dict
    at C speed; only the ``special`` positions (arrays, nested states, floats,
    buffers, strings, nullptr) need a conversion, and ``types`` is the exact
    plain-tree type of every position, checked in one comparison on decode.
    """

    names: tuple[str, ...]
    get: Callable[[dict[str, Any]], list[Any]]
    special: tuple[tuple[int, str, int, Any], ...]
    types: tuple[type, ...]


_PLANS: dict[tuple[int, int], tuple[VMStateDescription, _Plan]] = {}


def _getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], list[Any]]:
    if len(names) > 1:
        many = operator.itemgetter(*names)
        return lambda values: list(many(values))
    if names:
        (one,) = names
        return lambda values: [values[one]]
    return lambda values: []


def _plan(desc: VMStateDescription, version: int) -> _Plan:
    """The plan of ``desc`` for ``version``, computed once per description and version."""
    hit = _PLANS.get((id(desc), version))
    if hit is not None and hit[0] is desc:
        return hit[1]
    names: list[str] = []
    special: list[tuple[int, str, int, Any]] = []
    types: list[type] = []
    for f in desc.fields:
        if f.version_id > version:
            continue
        aux: Any = None
        array = f.num is not None or f.num_field is not None or f.elements is not None
        if f.kind == "struct":
            code, aux = (_STRUCT_ARRAY, (f.struct, f.elements)) if array else (_STRUCT, f.struct)
        elif f.kind == "int":
            code, aux = (_INT_ARRAY, (f.size, f.signed)) if array else (_INT, None)
        elif f.kind == "bool" and not array:
            code = _BOOL
        else:
            code, aux = (_ARRAY if array else _SCALAR), f.kind
        if code > _BOOL:
            special.append((len(names), f.name, code, aux))
        types.append(_SCALAR_TYPES[aux] if code == _SCALAR else _PLAIN_TYPES[code])
        names.append(f.name)
    plan = _Plan(tuple(names), _getter(tuple(names)), tuple(special), tuple(types))
    if len(_PLANS) > 4096:
        _PLANS.clear()
    _PLANS[(id(desc), version)] = (desc, plan)  # the desc is kept so its id stays unique
    return plan


def _float_bits(v: float) -> int:
    return int(_U64.unpack(_F64.pack(v))[0])  # the 64 bits, NaN payloads included


def _none(v: Any) -> None:
    return None


def _need(t: type) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is not t:
            raise TypeError(f"expected {t.__name__}, got {type(v).__name__}")
        return v

    return check


_ENCODE_SCALAR: dict[str, Callable[[Any], Any]] = {
    "bytes": bytes,
    "bool": _need(bool),
    "float": _float_bits,
    "str": _need(str),
    "null": _none,
    "int": int,
}


# --- encoding ------------------------------------------------------------------


_Template = tuple[int, list[Any], list[tuple[list[Any], Any, Any]], tuple[VMStateDescription, ...]]
_TEMPLATES: dict[int, tuple[VMStateDescription, _Template]] = {}
_GIDS: dict[Any, int] = {}


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
            _txt(f.name),
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
    head = [_txt(d.name), d.version_id, d.minimum_version_id]
    key = (tuple(head), tuple(keys), tuple(_template(s)[0] for s in d.subsections))
    if len(_TEMPLATES) > 65536:
        _TEMPLATES.clear()
        _GIDS.clear()
    gid = _GIDS.setdefault(key, len(_GIDS))
    t: _Template = (gid, head, fields, d.subsections)
    _TEMPLATES[id(d)] = (d, t)  # the desc is kept so its id stays unique
    return t


class _Encoder:
    def __init__(self) -> None:
        self.table: list[Any] = []
        self.by_gid: dict[int, int] = {}

    def desc(self, d: VMStateDescription) -> int:
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
                e[6] = self.desc(struct_)
            if elements is not None:
                e[7] = [self.desc(x) for x in elements]
            fields.append(e)
        subs = [self.desc(s) for s in subsections]
        ref = len(self.table)
        self.table.append([*head, fields, subs])
        self.by_gid[gid] = ref
        return ref

    def state(self, desc: VMStateDescription, st: VMState, path: str, depth: int = 0) -> list[Any]:
        if depth > LIMITS.max_depth:
            raise LimitExceeded(f"structs nested deeper than {LIMITS.max_depth}", path=path)
        if not isinstance(st, VMState):
            raise EncodingError(f"expected a VMState, got {type(st).__name__}", path=path)
        version = st.version_id
        values = st.fields
        plan = _plan(desc, version)
        try:
            out = plan.get(values)
        except KeyError as exc:
            raise EncodingError("field has no value", path=f"{path}.{exc.args[0]}") from None
        for i, name, code, aux in plan.special:
            v = out[i]
            try:
                if code == _INT_ARRAY:
                    out[i] = _array_struct(len(v), *aux).pack(*v)
                elif code == _STRUCT:
                    out[i] = self.state(aux, v, f"{path}.{name}", depth + 1)
                elif code == _STRUCT_ARRAY:
                    struct_, elems = aux
                    out[i] = self.states(struct_, elems, v, f"{path}.{name}", depth + 1)
                elif code == _ARRAY:
                    out[i] = [_ENCODE_SCALAR[aux](item) for item in v]
                else:
                    out[i] = _ENCODE_SCALAR[aux](v)
            except MiglabError:
                raise
            except (TypeError, ValueError, OverflowError, IndexError, struct.error) as exc:
                raise EncodingError(
                    f"value does not fit its field: {exc}", path=f"{path}.{name}"
                ) from None
        subs: list[Any] = []
        if st.subsections:
            index = {s.name: i for i, s in enumerate(desc.subsections)}
            for sub_name, sub in st.subsections.items():
                at = index.get(sub_name)
                if at is None:
                    raise EncodingError(
                        "subsection is not in the description", path=f"{path}/{sub_name}"
                    )
                subs.append([at, self.state(desc.subsections[at], sub, sub_name, depth + 1)])
        return [version, out, subs]

    def states(
        self,
        struct_: VMStateDescription,
        elems: tuple[VMStateDescription, ...] | None,
        items: list[Any],
        path: str,
        depth: int,
    ) -> list[Any]:
        """The elements of an array of structs; flat ones (plain values only) in one step."""
        if elems is None and not struct_.subsections:
            version = struct_.version_id
            plan = _plan(struct_, version)
            if not plan.special:
                get = plan.get
                out = []
                for j, item in enumerate(items):
                    if type(item) is VMState and item.version_id == version:
                        try:
                            out.append([version, get(item.fields), []])
                            continue
                        except KeyError:
                            pass
                    out.append(self.state(struct_, item, f"{path}[{j}]", depth))
                return out
        return [
            self.state(elems[j] if elems else struct_, item, f"{path}[{j}]", depth)
            for j, item in enumerate(items)
        ]

    def records(self, records: list[Record], depth: int = 0) -> list[Any]:
        out: list[Any] = []
        for rec in records:
            if isinstance(rec, CommandRecord):
                packaged = (
                    self.records(rec.packaged, depth + 1) if rec.packaged is not None else None
                )
                out.append(["C", rec.command, bytes(rec.data), packaged])
            elif isinstance(rec, Section):
                out.append(
                    [
                        "S",
                        rec.kind.value[0],
                        rec.section_id,
                        _txt(rec.name),
                        rec.instance_id,
                        rec.version_id,
                        rec.footer,
                        self.payload(rec),
                    ]
                )
            else:
                raise EncodingError(f"record of unknown type {type(rec).__name__}")
        return out

    def payload(self, s: Section) -> list[Any]:
        p = s.payload
        if isinstance(p, VMState):
            return ["D", self.desc(p.desc), self.state(p.desc, p, s.name)]
        if isinstance(p, RamPayload):
            n = len(p.words)
            if p.overrides:
                data = b"".join(bytes(p.payload(i)) for i in range(n))
            else:
                src, pos, length = p.source, p.pos.tolist(), p.length.tolist()
                data = b"".join([src[pos[i] : pos[i] + length[i]] for i in range(n)])
            return [
                "R",
                p.words.astype(">u8").tobytes(),
                p.named.astype("u1").tobytes(),
                p.block.astype(">i4").tobytes(),
                p.length.astype(">i4").tobytes(),
                data,
                _blocks(p.block_list) if p.block_list is not None else None,
            ]
        if isinstance(p, Opaque):
            return ["O", bytes(p.data), p.reason]
        raise EncodingError(f"payload of unknown type {type(p).__name__}", path=s.name)


def _blocks(blocks: list[RamBlock]) -> list[Any]:
    return [[_txt(b.name), b.used_length, b.addr] for b in blocks]


def to_plain(stream: Stream) -> dict[str, Any]:
    """The plain tree of ``stream`` (see the module docstring for its shape).

    Raises:
        EncodingError: a value does not fit its field, or a description
            carries code (``exists``).
    """
    with paused_gc():  # many small lists, no cycles: no collection midway
        return _to_plain(stream)


def _to_plain(stream: Stream) -> dict[str, Any]:
    enc = _Encoder()
    configuration = None
    if stream.configuration is not None:
        c = stream.configuration
        configuration = [enc.desc(c.desc), enc.state(c.desc, c, "configuration")]
    records = enc.records(stream.records)
    return {
        "miglab": TREE_VERSION,
        "version": stream.version,
        "page_size": stream.page_size,
        "eof": stream.eof,
        "ignore_shared": stream.ram.ignore_shared,
        "descs": enc.table,
        "configuration": configuration,
        "blocks": _blocks(stream.ram.blocks),
        "records": records,
        "vmdesc": stream.vmdesc_json().decode() if stream.vmdesc is not None else None,
        "trailer": bytes(stream.trailer),
    }


# --- decoding ------------------------------------------------------------------


def _int(x: Any, what: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or not lo <= x <= hi:
        raise EncodingError(f"{what} must be an integer in [{lo}, {hi}], got {x!r:.40}")
    return x


def _opt_int(x: Any, what: str) -> int | None:
    return None if x is None else _int(x, what)


def _list(x: Any, what: str) -> list[Any]:
    if not isinstance(x, list):
        raise EncodingError(f"{what} must be a list, got {type(x).__name__}")
    return x


def _bytes(x: Any, what: str) -> bytes:
    if not isinstance(x, bytes):
        raise EncodingError(f"{what} must be bytes, got {type(x).__name__}")
    return x


def _bool(x: Any, what: str) -> bool:
    if not isinstance(x, bool):
        raise EncodingError(f"{what} must be a bool, got {type(x).__name__}")
    return x


def _ref(x: Any, table: list[VMStateDescription], what: str) -> VMStateDescription:
    return table[_int(x, what, 0, len(table) - 1)] if table else _no_desc(what)


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
_MAX_TABLES = 256


def _descs(raw: Any) -> list[VMStateDescription]:
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
    for i, d in enumerate(_list(raw, "descs")):
        d = _list(d, f"descs[{i}]")
        if len(d) != 5:
            raise EncodingError(f"descs[{i}] must have 5 items, got {len(d)}")
        fields = tuple(
            _cached_field(f, table, f"descs[{i}].fields[{j}]")
            for j, f in enumerate(_list(d[3], "fields"))
        )
        subs = tuple(_ref(r, table, f"descs[{i}] subsection") for r in _list(d[4], "subsections"))
        key = (d[0], d[1], d[2], tuple(map(id, fields)), tuple(map(id, subs)))
        desc = _DESC_CACHE.get(key)
        if desc is None:
            name = _untxt(d[0], f"descs[{i}] name")
            desc = VMStateDescription(
                name=name,
                version_id=_int(d[1], f"{name} version_id"),
                minimum_version_id=_int(d[2], f"{name} minimum_version_id"),
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
        s = _ref(raw[6], table, where) if raw[6] is not None else None
        el = raw[7] if len(raw) > 7 else None
        elems = tuple(_ref(r, table, where) for r in _list(el, where)) if el is not None else None
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


def _field(raw: Any, table: list[VMStateDescription], where: str) -> VMStateField:
    f = _list(raw, where)
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
    struct_ = _ref(f[6], table, where) if f[6] is not None else None
    elements = (
        tuple(_ref(r, table, where) for r in _list(f[7], where)) if f[7] is not None else None
    )
    if kind == "struct" and struct_ is None:
        raise EncodingError(f"{where} is a struct without a description")
    for ref in (f[4], f[5]):
        if ref is not None and not isinstance(ref, str):
            raise EncodingError(f"{where} count/size field must be a name")
    return VMStateField(
        name=_untxt(f[0], where),
        info=info,
        kind=kind,
        size=_int(f[2], f"{where} size", 0, 1 << 32),
        signed=signed0 if f[9] is None else _bool(f[10], f"{where} signed"),
        check=check,
        num=_opt_int(f[3], f"{where} num"),
        num_field=f[4],
        size_field=f[5],
        struct=struct_,
        elements=elements,
        version_id=_int(f[8] or 0, f"{where} version_id"),
    )


def _state(desc: VMStateDescription, raw: Any, path: str, depth: int) -> VMState:
    if depth > LIMITS.max_depth:
        raise LimitExceeded(f"structs nested deeper than {LIMITS.max_depth}", path=path)
    if type(raw) is not list or len(raw) != 3:
        raise EncodingError("a state must be [version, values, subsections]", path=path)
    version = _int(raw[0], f"{path} version", 0, 0xFFFFFFFF)
    vals = _list(raw[1], path)
    plan = _plan(desc, version)
    if len(vals) != len(plan.names):
        more = "more" if len(vals) > len(plan.names) else "fewer"
        raise EncodingError(f"state has {more} values than its description", path=path)
    if tuple(map(type, vals)) != plan.types:
        for name, v, want in zip(plan.names, vals, plan.types, strict=True):
            if type(v) is not want:
                raise EncodingError(
                    f"expected {want.__name__}, got {type(v).__name__}", path=f"{path}.{name}"
                )
    fields = dict(zip(plan.names, vals, strict=True))
    for i, name, code, aux in plan.special:
        v = vals[i]
        if code == _INT_ARRAY:
            size, signed = aux
            if len(v) % size:
                raise EncodingError(f"expected packed {size}-byte integers", path=f"{path}.{name}")
            v = list(_array_struct(len(v) // size, size, signed).unpack(v))
        elif code == _STRUCT:
            v = _state(aux, v, f"{path}.{name}", depth + 1)
        elif code == _STRUCT_ARRAY:
            struct_, elems = aux
            if elems is not None and len(v) != len(elems):
                raise EncodingError(
                    f"{len(v)} elements, the description has {len(elems)}",
                    path=f"{path}.{name}",
                )
            v = _states(struct_, elems, v, f"{path}.{name}", depth + 1)
        elif code == _ARRAY:
            v = [_decode_scalar(aux, x, f"{path}.{name}") for x in v]
        else:
            v = _decode_scalar(aux, v, f"{path}.{name}")
        fields[name] = v
    subs: dict[str, VMState] = {}
    for item in _list(raw[2], path):
        item = _list(item, path)
        if len(item) != 2:
            raise EncodingError("a subsection entry must be [index, state]", path=path)
        sd = desc.subsections[_int(item[0], f"{path} subsection", 0, len(desc.subsections) - 1)]
        subs[sd.name] = _state(sd, item[1], sd.name, depth + 1)
    return VMState(desc, version, fields, subs)


def _states(
    struct_: VMStateDescription,
    elems: tuple[VMStateDescription, ...] | None,
    items: list[Any],
    path: str,
    depth: int,
) -> list[VMState]:
    """The elements of an array of structs; flat ones (plain values only) in one step each."""
    if elems is None and not struct_.subsections:
        version = struct_.version_id
        plan = _plan(struct_, version)
        if not plan.special:
            names, types = plan.names, plan.types
            out = []
            for j, item in enumerate(items):
                if (
                    type(item) is list
                    and len(item) == 3
                    and type(item[0]) is int
                    and item[0] == version
                    and type(item[1]) is list
                    and tuple(map(type, item[1])) == types
                    and type(item[2]) is list
                    and not item[2]
                ):
                    out.append(VMState(struct_, version, dict(zip(names, item[1], strict=True))))
                else:
                    out.append(_state(struct_, item, f"{path}[{j}]", depth))
            return out
    return [
        _state(elems[j] if elems else struct_, item, f"{path}[{j}]", depth)
        for j, item in enumerate(items)
    ]


def _decode_scalar(kind: str, v: Any, path: str) -> Any:
    if kind == "float":
        return _F64.unpack(_U64.pack(_int(v, path)))[0]
    if kind == "null":
        if v is not None:
            raise EncodingError("expected null", path=path)
        return None
    want = {"bytes": bytes, "bool": bool, "str": str, "int": int}[kind]
    if type(v) is not want:
        raise EncodingError(f"expected {kind}, got {type(v).__name__}", path=path)
    return v


def _block_list(raw: Any, what: str) -> list[RamBlock]:
    out = []
    for b in _list(raw, what):
        b = _list(b, what)
        if len(b) != 3:
            raise EncodingError(f"{what} entries must be [name, used_length, addr]")
        out.append(RamBlock(_untxt(b[0], what), _int(b[1], what), _opt_int(b[2], what)))
    return out


class _Decoder:
    def __init__(self, table: list[VMStateDescription], ctx: RamContext) -> None:
        self.table = table
        self.ctx = ctx
        self.starts: dict[int, Section] = {}

    def records(self, raw: Any, depth: int = 0) -> list[Record]:
        if depth > LIMITS.max_packaged_depth:
            raise LimitExceeded("PACKAGED commands nested too deeply")
        items = _list(raw, "records")
        if len(items) > LIMITS.max_sections:
            raise LimitExceeded(f"more than {LIMITS.max_sections} records")
        out: list[Record] = []
        for i, r in enumerate(items):
            r = _list(r, f"records[{i}]")
            if r and r[0] == "C" and len(r) == 4:
                packaged = self.records(r[3], depth + 1) if r[3] is not None else None
                out.append(
                    CommandRecord(
                        _int(r[1], "command", 0, 0xFFFF), _bytes(r[2], "command data"), packaged
                    )
                )
            elif r and r[0] == "S" and len(r) == 8:
                kind = _KINDS.get(r[1]) if isinstance(r[1], str) else None
                if kind is None:
                    raise EncodingError(f"records[{i}] has unknown section kind {r[1]!r:.20}")
                name = _untxt(r[3], "section name")
                sid = _int(r[2], "section id", 0, 0xFFFFFFFF)
                inst = _int(r[4], "instance id", 0, 0xFFFFFFFF)
                ver = _int(r[5], "version id", 0, 0xFFFFFFFF)
                payload = self.payload(r[7], name)
                out.append(Section(kind, sid, name, inst, ver, payload, _bool(r[6], "footer")))
            else:
                raise EncodingError(f"records[{i}] is neither a section nor a command")
        return out

    def payload(self, raw: Any, name: str) -> Any:
        p = _list(raw, name)
        tag = p[0] if p else None
        if tag == "D" and len(p) == 3:
            desc = _ref(p[1], self.table, name)
            return _state(desc, p[2], name, 0)
        if tag == "O" and len(p) == 3:
            if not isinstance(p[2], str):
                raise EncodingError("opaque reason must be text", path=name)
            return Opaque(_bytes(p[1], name), p[2])
        if tag == "R" and len(p) == 7:
            return self.ram(p, name)
        raise EncodingError(f"unknown payload {tag!r:.20}", path=name)

    def ram(self, p: list[Any], name: str) -> RamPayload:
        words = np.frombuffer(_bytes(p[1], name), ">u8") if len(p[1]) % 8 == 0 else None
        n = -1 if words is None else len(words)
        named = np.frombuffer(_bytes(p[2], name), "u1")
        block_b, length_b = _bytes(p[3], name), _bytes(p[4], name)
        if words is None or len(named) != n or len(block_b) != 4 * n or len(length_b) != 4 * n:
            raise EncodingError("RAM arrays have different lengths", path=name)
        block = np.frombuffer(block_b, ">i4").astype(np.int32)
        length = np.frombuffer(length_b, ">i4").astype(np.int32)
        data = _bytes(p[5], name)
        nblocks = len(self.ctx.blocks)
        if n and (
            length.min() < 0
            or int(length.sum(dtype=np.int64)) != len(data)
            or block.min() < -1
            or block.max() >= nblocks
            or named.max() > 1
            or bool(((named == 1) & (block < 0)).any())
        ):
            raise EncodingError("RAM record lengths, blocks or names are inconsistent", path=name)
        if not n and data:
            raise EncodingError("RAM payload bytes without records", path=name)
        pos = np.zeros(n, dtype=np.int64)
        if n:
            np.cumsum(length[:-1], out=pos[1:])
        return RamPayload(
            source=memoryview(data),
            page_size=self.ctx.page_size,
            words=words.astype(np.uint64),
            named=named.astype(bool),
            block=block,
            pos=pos,
            length=length,
            blocks=self.ctx.blocks,
            block_list=_block_list(p[6], "block_list") if p[6] is not None else None,
        )


def from_plain(tree: Any, source_size: int = 0) -> Stream:
    """Rebuild a stream from a plain tree, checking every item.

    Raises:
        EncodingError: the tree does not have the shape :func:`to_plain` makes.
    """
    with paused_gc():  # many small states, no cycles: no collection midway
        return guarded(_from_plain, tree, source_size)


def _from_plain(tree: Any, source_size: int) -> Stream:
    if not isinstance(tree, dict):
        raise EncodingError(f"a miglab tree is a map, got {type(tree).__name__}")
    if tree.get("miglab") != TREE_VERSION:
        raise EncodingError(f"tree version {tree.get('miglab')!r:.20}, expected {TREE_VERSION}")
    page_size = _int(tree["page_size"], "page_size", 1, 1 << 30)
    if page_size & (page_size - 1):
        raise EncodingError(f"page_size {page_size} is not a power of two")
    table = _descs(tree["descs"])
    ctx = RamContext(
        page_size=page_size,
        ignore_shared=_bool(tree["ignore_shared"], "ignore_shared"),
        blocks=_block_list(tree["blocks"], "blocks"),
    )
    configuration = None
    if tree["configuration"] is not None:
        c = _list(tree["configuration"], "configuration")
        if len(c) != 2:
            raise EncodingError("configuration must be [description, state]")
        configuration = _state(_ref(c[0], table, "configuration"), c[1], "configuration", 0)
    records = _Decoder(table, ctx).records(tree["records"])
    vmdesc = None
    if tree["vmdesc"] is not None:
        text = tree["vmdesc"]
        if not isinstance(text, str) or len(text) > LIMITS.max_vmdesc_bytes:
            raise EncodingError("vmdesc must be JSON text within LIMITS.max_vmdesc_bytes")
        vmdesc = json.loads(text)
        if not isinstance(vmdesc, dict):
            raise EncodingError("vmdesc must be a JSON object")
    return Stream(
        version=_int(tree["version"], "version", 0, 0xFFFFFFFF),
        configuration=configuration,
        records=records,
        eof=_bool(tree["eof"], "eof"),
        vmdesc=vmdesc,
        trailer=_bytes(tree["trailer"], "trailer"),
        page_size=page_size,
        ram=ctx,
        source_size=source_size,
    )


def guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; any slip on malformed input surfaces as an EncodingError."""
    try:
        return fn(*args)
    except MiglabError:
        raise
    except _DECODE_ERRORS as exc:
        raise EncodingError(
            f"malformed encoded tree ({type(exc).__name__}: {exc!s:.200})"
        ) from None
