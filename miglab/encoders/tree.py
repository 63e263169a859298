"""The stream as a plain tree: the common shape of the self-describing formats.

JSON, CBOR, MessagePack and ASN.1 BER/PER all carry the same *plain tree*:
maps with text keys, lists, and only ``None``, ``bool``, ``int``, ``float``,
``str`` and ``bytes`` leaves.  :func:`to_plain` builds it from a
:class:`~miglab.stream.model.Stream`, :func:`from_plain` rebuilds the stream,
checking every item, so that ``from_plain(to_plain(s)).to_bytes() ==
s.to_bytes()`` byte for byte.

Shape (version 2)::

    {"miglab": 2, "version": 3, "page_size": 4096, "eof": True,
     "ignore_shared": False,
     "descs": [DESC, ...],            # each distinct description once
     "configuration": [DREF, version, STATE] | None,
     "blocks": [[name, used_length, addr | None], ...],
     "records": [RECORD, ...],
     "vmdesc": "<QEMU's JSON text>" | None,
     "trailer": b"..."}

    DESC    = [name, version_id, minimum_version_id, [FIELD...], [DREF...]]
    FIELD   = [name, info, size, num, num_field, size_field, struct DREF,
               [element DREF...], version_id, kind, signed, check]
              (trailing Nones dropped; kind/signed/check only where they
              differ from what ``INFO_TYPES`` says for ``info``)
    STATE   = {"field": value, ..., "sub/section": {...}}   # by name
    RECORD  = ["S", kind, section_id, name, instance_id, version_id, footer, PAYLOAD]
            | ["C", command, data, [RECORD...] | None]
    PAYLOAD = ["D", DREF, version, STATE] | ["O", data, reason]
            | ["R", words, named, block, length, data, [[name, len, addr]...] | None]

A device ``STATE`` is the object tree of the seed's QObject path: the
:class:`~miglab.visitors.object_visitor.ObjectOutputVisitor` on the one walk
(:func:`~miglab.vmstate.walk.visit_vmstate`) writes it, the strict
:class:`~miglab.visitors.object_visitor.ObjectInputVisitor` reads it back
(a member nobody reads is an error).  Fields are named, so a reader with the
plain library finds ``tree[...]["mac_reg[1]"]`` without miglab.  Nested
structs and subsections are read at their description's version.

Descriptions (the types: u8 vs u32, signedness, counts) are deduplicated by
value and referenced by index (``DREF``); a description only refers to
earlier ones, so the table is rebuilt in one pass and cannot loop.  RAM
chunks travel as packed numpy arrays plus one byte string of all payloads,
so pages stay binary.  Names that are not valid UTF-8 (QEMU idstrs are raw
bytes) travel as bytes and come back through ``surrogateescape``.

Field ``exists`` predicates are code, not data, and cannot be carried: a
description with one is refused with an :class:`~miglab.errors.EncodingError`.
"""

from __future__ import annotations

import json
import marshal
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from miglab.errors import (
    EncodingError,
    LimitExceeded,
    MiglabError,
    MigrationFormatError,
    VisitorError,
)
from miglab.limits import LIMITS
from miglab.stream.model import CommandRecord, Opaque, Record, Section, SectionKind, Stream
from miglab.stream.ram import RamBlock, RamContext, RamPayload
from miglab.visitors.object_visitor import ObjectInputVisitor, ObjectOutputVisitor
from miglab.vmstate.description import INFO_TYPES, VMStateDescription, VMStateField
from miglab.vmstate.layout import paused_gc
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("TREE_VERSION", "from_plain", "guarded", "to_plain")

TREE_VERSION = 2
_KINDS = {k.value[0]: k for k in SectionKind}  # "s", "p", "e", "f"
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
        try:  # a lone surrogate (U+D800 alone) has no bytes to write back
            x.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise EncodingError(
                f"{what} is not writable text ({exc.reason} at {exc.start})"
            ) from None
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", "surrogateescape")
    raise EncodingError(f"{what} must be text, got {type(x).__name__}")


# --- device states: the object visitors on the one walk -------------------------


def _join(path: str, member: str | None) -> str:
    if not member:
        return path
    return f"{path}{member}" if member.startswith("[") else f"{path}.{member}"


def plain_state(st: VMState, desc: VMStateDescription | None = None, path: str = "") -> Any:
    """The plain tree of one device state: members by name (:class:`ObjectOutputVisitor`).

    Raises:
        EncodingError: a value does not fit its field, naming the member.
    """
    if not isinstance(st, VMState):
        raise EncodingError(f"expected a VMState, got {type(st).__name__}", path=path or None)
    v = ObjectOutputVisitor()
    try:
        visit_vmstate(v, desc if desc is not None else st.desc, st, st.version_id)
    except VisitorError as exc:
        raise EncodingError(exc.message, path=_join(path, exc.path)) from None
    return v.complete()


def state_from_plain(desc: VMStateDescription, version: int, raw: Any, path: str = "") -> VMState:
    """The device state a plain tree holds, read strictly (:class:`ObjectInputVisitor`).

    Raises:
        EncodingError: a member is missing, of the wrong type, out of range,
            or unknown to the description, naming it.
    """
    if type(raw) is not dict:
        raise EncodingError(f"a state must be a map, got {type(raw).__name__}", path=path or None)
    try:
        return visit_vmstate(ObjectInputVisitor(raw), desc, None, version)
    except (VisitorError, MigrationFormatError) as exc:
        raise EncodingError(exc.message, path=_join(path, exc.path)) from None


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


# How a device state becomes a tree value and back: the plain object trees by
# default; a format with its own typed shape (ASN.1) passes its own pair.
MakeState = Callable[[VMState, int, str], Any]  # (state, description ref, path)
ReadState = Callable[[VMStateDescription, int, Any, str], VMState]  # (desc, version, raw, path)


def _plain(st: VMState, ref: int, path: str) -> Any:
    return plain_state(st, path=path)


class _Encoder:
    def __init__(self, make_state: MakeState = _plain) -> None:
        self.make_state = make_state
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
            ref = self.desc(p.desc)
            return ["D", ref, p.version_id, self.make_state(p, ref, s.name)]
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


def to_plain(stream: Stream, *, make_state: MakeState = _plain) -> dict[str, Any]:
    """The plain tree of ``stream`` (see the module docstring for its shape).

    ``make_state(state, description ref, path)`` gives each device state's
    value (default: its object tree, :func:`plain_state`).

    Raises:
        EncodingError: a value does not fit its field, or a description
            carries code (``exists``).
    """
    with paused_gc():  # many small lists, no cycles: no collection midway
        return _to_plain(stream, make_state)


def _to_plain(stream: Stream, make_state: MakeState) -> dict[str, Any]:
    enc = _Encoder(make_state)
    configuration = None
    if stream.configuration is not None:
        c = stream.configuration
        ref = enc.desc(c.desc)
        configuration = [ref, c.version_id, make_state(c, ref, "configuration")]
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


# The widths QEMU's VMState types have (int8..uint64, bool, float64).
_SIZES: dict[str, tuple[int, ...]] = {"int": (1, 2, 4, 8), "bool": (1,), "float": (8,)}


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
    if kind in _SIZES and f[2] not in _SIZES[kind]:
        # A wider integer is written out from one small number (2**32 bytes from a 7 KB tree).
        raise EncodingError(f"{where} is {f[2]!r:.20} bytes wide; a QEMU {kind} is {_SIZES[kind]}")
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


def _block_list(raw: Any, what: str) -> list[RamBlock]:
    out = []
    for b in _list(raw, what):
        b = _list(b, what)
        if len(b) != 3:
            raise EncodingError(f"{what} entries must be [name, used_length, addr]")
        out.append(RamBlock(_untxt(b[0], what), _int(b[1], what), _opt_int(b[2], what)))
    return out


class _Decoder:
    def __init__(
        self, table: list[VMStateDescription], ctx: RamContext, read_state: ReadState
    ) -> None:
        self.read_state = read_state
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
        if tag == "D" and len(p) == 4:
            desc = _ref(p[1], self.table, name)
            return self.read_state(desc, _int(p[2], f"{name} version", 0, 0xFFFFFFFF), p[3], name)
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


def from_plain(
    tree: Any, source_size: int = 0, *, read_state: ReadState = state_from_plain
) -> Stream:
    """Rebuild a stream from a plain tree, checking every item.

    ``read_state(desc, version, raw, path)`` reads each device state back
    (default: :func:`state_from_plain`).

    Raises:
        EncodingError: the tree does not have the shape :func:`to_plain` makes.
    """
    with paused_gc():  # many small states, no cycles: no collection midway
        return guarded(_from_plain, tree, source_size, read_state)


def _from_plain(tree: Any, source_size: int, read_state: ReadState) -> Stream:
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
        if len(c) != 3:
            raise EncodingError("configuration must be [description, version, state]")
        configuration = read_state(
            _ref(c[0], table, "configuration"),
            _int(c[1], "configuration version", 0, 0xFFFFFFFF),
            c[2],
            "configuration",
        )
    records = _Decoder(table, ctx, read_state).records(tree["records"])
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
