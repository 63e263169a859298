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
     "vmdesc": "<the vmdesc as JSON text>" | None,
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
value and referenced by index (``DREF``): :mod:`miglab.encoders.desc_table`
writes and reads that table.  RAM chunks travel as packed numpy arrays plus
one byte string of all payloads, so pages stay binary.  Every item read back
is checked by :mod:`miglab.encoders.plain_items` (names that are not valid
UTF-8 travel as bytes).  This module holds the records, the RAM payloads
and the stream around them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from miglab.encoders.desc_table import desc_at, read_descs, table_for
from miglab.encoders.plain_items import (
    read_bool,
    read_bytes,
    read_int,
    read_list,
    read_opt_int,
    read_text,
    wire_text,
)
from miglab.encoders.tree_vmdesc import defer_vmdesc, parsed_vmdesc, vmdesc_text
from miglab.encoders.typed_states import plan_of, typed_state
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
from miglab.visitors.object_plans import plain_of
from miglab.visitors.object_visitor import ObjectInputVisitor, ObjectOutputVisitor
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.layout import paused_gc, struct_plan
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
    if desc is None:
        desc = st.desc
    plan = struct_plan(desc, st.version_id)
    if plan is not None and plan.depth < LIMITS.max_depth:
        got = plain_of(plan, st)  # the walk's first step without the walk: most states are one plan
        if got is not None:
            return got
    v = ObjectOutputVisitor()
    try:
        visit_vmstate(v, desc, st, st.version_id)
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
        plan = plan_of(desc, version)
        if plan is not None:
            got = typed_state(plan, raw)  # one msgspec check of the whole state: no walk
            if got is not None:
                return got
        return visit_vmstate(ObjectInputVisitor(raw), desc, None, version)
    except (VisitorError, MigrationFormatError) as exc:
        raise EncodingError(exc.message, path=_join(path, exc.path)) from None


# --- encoding ------------------------------------------------------------------


# How a device state becomes a tree value and back: the plain object trees by
# default; a format with its own typed shape (ASN.1) passes its own pair.
MakeState = Callable[[VMState, int, str], Any]  # (state, description ref, path)
ReadState = Callable[[VMStateDescription, int, Any, str], VMState]  # (desc, version, raw, path)


def _plain(st: VMState, ref: int, path: str) -> Any:
    return plain_state(st, path=path)


def _state_descs(records: list[Record], out: list[VMStateDescription]) -> None:
    """The descriptions of the device states in ``records``, in the order they are written."""
    for rec in records:
        if isinstance(rec, CommandRecord):
            if rec.packaged is not None:
                _state_descs(rec.packaged, out)
        elif isinstance(rec, Section) and isinstance(rec.payload, VMState):
            out.append(rec.payload.desc)


class _Encoder:
    def __init__(self, stream: Stream, make_state: MakeState) -> None:
        self.make_state = make_state
        descs: list[VMStateDescription] = []
        if stream.configuration is not None:
            descs.append(stream.configuration.desc)
        _state_descs(stream.records, descs)
        self.table, refs = table_for(descs)
        self.refs = {id(d): r for d, r in zip(descs, refs, strict=True)}

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
                        wire_text(rec.name),
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
            ref = self.refs[id(p.desc)]
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
    return [[wire_text(b.name), b.used_length, b.addr] for b in blocks]


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
    enc = _Encoder(stream, make_state)
    configuration = None
    if stream.configuration is not None:
        c = stream.configuration
        ref = enc.refs[id(c.desc)]
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
        "vmdesc": vmdesc_text(stream),
        "trailer": bytes(stream.trailer),
    }


# --- decoding ------------------------------------------------------------------


def _block_list(raw: Any, what: str) -> list[RamBlock]:
    out = []
    for b in read_list(raw, what):
        b = read_list(b, what)
        if len(b) != 3:
            raise EncodingError(f"{what} entries must be [name, used_length, addr]")
        out.append(RamBlock(read_text(b[0], what), read_int(b[1], what), read_opt_int(b[2], what)))
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
        items = read_list(raw, "records")
        if len(items) > LIMITS.max_sections:
            raise LimitExceeded(f"more than {LIMITS.max_sections} records")
        out: list[Record] = []
        for i, r in enumerate(items):
            r = read_list(r, f"records[{i}]")
            if r and r[0] == "C" and len(r) == 4:
                packaged = self.records(r[3], depth + 1) if r[3] is not None else None
                out.append(
                    CommandRecord(
                        read_int(r[1], "command", 0, 0xFFFF),
                        read_bytes(r[2], "command data"),
                        packaged,
                    )
                )
            elif r and r[0] == "S" and len(r) == 8:
                kind = _KINDS.get(r[1]) if isinstance(r[1], str) else None
                if kind is None:
                    raise EncodingError(f"records[{i}] has unknown section kind {r[1]!r:.20}")
                name = read_text(r[3], "section name")
                sid = read_int(r[2], "section id", 0, 0xFFFFFFFF)
                inst = read_int(r[4], "instance id", 0, 0xFFFFFFFF)
                ver = read_int(r[5], "version id", 0, 0xFFFFFFFF)
                payload = self.payload(r[7], name)
                out.append(Section(kind, sid, name, inst, ver, payload, read_bool(r[6], "footer")))
            else:
                raise EncodingError(f"records[{i}] is neither a section nor a command")
        return out

    def payload(self, raw: Any, name: str) -> Any:
        p = read_list(raw, name)
        tag = p[0] if p else None
        if tag == "D" and len(p) == 4:
            desc = desc_at(p[1], self.table, name)
            return self.read_state(
                desc, read_int(p[2], f"{name} version", 0, 0xFFFFFFFF), p[3], name
            )
        if tag == "O" and len(p) == 3:
            if not isinstance(p[2], str):
                raise EncodingError("opaque reason must be text", path=name)
            return Opaque(read_bytes(p[1], name), p[2])
        if tag == "R" and len(p) == 7:
            return self.ram(p, name)
        raise EncodingError(f"unknown payload {tag!r:.20}", path=name)

    def ram(self, p: list[Any], name: str) -> RamPayload:
        words = np.frombuffer(read_bytes(p[1], name), ">u8") if len(p[1]) % 8 == 0 else None
        n = -1 if words is None else len(words)
        named = np.frombuffer(read_bytes(p[2], name), "u1")
        block_b, length_b = read_bytes(p[3], name), read_bytes(p[4], name)
        if words is None or len(named) != n or len(block_b) != 4 * n or len(length_b) != 4 * n:
            raise EncodingError("RAM arrays have different lengths", path=name)
        block = np.frombuffer(block_b, ">i4").astype(np.int32)
        length = np.frombuffer(length_b, ">i4").astype(np.int32)
        data = read_bytes(p[5], name)
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
    page_size = read_int(tree["page_size"], "page_size", 1, 1 << 30)
    if page_size & (page_size - 1):
        raise EncodingError(f"page_size {page_size} is not a power of two")
    table = read_descs(tree["descs"])
    ctx = RamContext(
        page_size=page_size,
        ignore_shared=read_bool(tree["ignore_shared"], "ignore_shared"),
        blocks=_block_list(tree["blocks"], "blocks"),
    )
    configuration = None
    if tree["configuration"] is not None:
        c = read_list(tree["configuration"], "configuration")
        if len(c) != 3:
            raise EncodingError("configuration must be [description, version, state]")
        configuration = read_state(
            desc_at(c[0], table, "configuration"),
            read_int(c[1], "configuration version", 0, 0xFFFFFFFF),
            c[2],
            "configuration",
        )
    records = _Decoder(table, ctx, read_state).records(tree["records"])
    stream = Stream(
        version=read_int(tree["version"], "version", 0, 0xFFFFFFFF),
        configuration=configuration,
        records=records,
        eof=read_bool(tree["eof"], "eof"),
        trailer=read_bytes(tree["trailer"], "trailer"),
        page_size=page_size,
        ram=ctx,
        source_size=source_size,
    )
    text = tree["vmdesc"]
    if text is not None:
        if not isinstance(text, str) or len(text) > LIMITS.max_vmdesc_bytes:
            raise EncodingError("vmdesc must be JSON text within LIMITS.max_vmdesc_bytes")
        if not defer_vmdesc(stream, text):
            stream.vmdesc = parsed_vmdesc(text)
    return stream


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
