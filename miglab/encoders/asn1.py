"""``asn1-ber`` and ``asn1-per``: the stream as a value of ASN.1 types generated from its descriptions.

The module (:mod:`miglab.encoders.asn1_module`) has one ``SEQUENCE`` per
description (device type and version), typed field by field, and a typed
record layer around the states: sections, commands, RAM chunks as runs of
page records (:mod:`miglab.encoders.asn1_ram`).  Because every integer has
its range and RAM travels as runs, aligned PER is smaller than QEMU's own
stream.  Device states go from and to the module's values through visitors
on the one walk (:class:`Asn1OutputVisitor`, :class:`Asn1InputVisitor`: the
object visitors with ASN.1 identifiers for names).

Both encodings are::

    "MLA3"  codec ("B" = BER, "P" = PER)  schema id (8 bytes: sha256 of the module text)
    be32 length, then the description table (``Descriptions`` of the fixed module)
    the stream (``Stream`` of the module generated from that table)

The module itself does not travel: the decoder regenerates it from the
description table and checks it against the schema id, so both decode
alone.  :func:`schema_text` gives the module of a stream, for asn1tools or
any other ASN.1 tool: with it, ``compile_string(text, "per").decode("Stream",
data[17 + n:])`` reads the stream's value, the e1000's ``mac_reg`` by name.
The vmdesc trailer is not carried when it is what the device states imply
(:func:`miglab.stream.vmdesc.vmdesc_entry` rebuilds it byte for byte); a
flag says so, and the text travels otherwise.

asn1tools is imported and a module compiled on first use (from its parsed form, no text
parse: 0.65 s for a module of 84 types at load 13; compiled modules are cached per module
text and codec), so only a process that encodes or decodes ASN.1 pays.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from miglab.encoders.asn1_module import (
    DESCRIPTIONS,
    desc_rows,
    desc_values,
    field_indexes,
    identifier,
    schema_id,
    stream_module,
    with_indexes,
)
from miglab.encoders.asn1_ram import block_values, blocks_of, ram_of, ram_value
from miglab.encoders.asn1_types import Module, name_value
from miglab.encoders.asn1_visitors import (
    Asn1InputVisitor,
    Asn1OutputVisitor,
    read_state,
    state_value,
)
from miglab.encoders.desc_table import read_descs, table_for
from miglab.encoders.plain_items import read_bool, read_bytes, read_int, read_text
from miglab.encoders.tree import guarded
from miglab.errors import EncodingError, LimitExceeded
from miglab.limits import LIMITS
from miglab.stream.model import CommandRecord, Opaque, Record, Section, SectionKind, Stream
from miglab.stream.ram import RamContext, RamPayload
from miglab.stream.vmdesc import vmdesc_entry, vmdesc_struct
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.layout import paused_gc
from miglab.vmstate.state import VMState

__all__ = (
    "MAGIC",
    "Asn1InputVisitor",
    "Asn1OutputVisitor",
    "decode_ber",
    "decode_per",
    "encode_ber",
    "encode_per",
    "identifier",
    "schema_id",
    "schema_text",
    "sniff_ber",
    "sniff_per",
)

MAGIC = b"MLA3"
_HEAD = 17  # magic, codec, schema id, be32 length of the description table
_F64 = struct.Struct(">d")
# The two key orders of QEMU's vmdesc object (QEMU >= 9.2 puts "configuration" first).
_VMDESC_KEYS = {
    "page-size-devices": ("page_size", "devices"),
    "configuration-page-size-devices": ("configuration", "page_size", "devices"),
}


def _asn1tools() -> Any:
    import asn1tools

    return asn1tools


# Compiled modules by text and codec: streams of one QEMU and machine share a module.
_COMPILED: dict[tuple[str, str], Any] = {}


def _compiled(module: Module, codec: str) -> Any:
    hit = _COMPILED.get((module.text, codec))
    if hit is not None:
        return hit
    asn1tools = _asn1tools()
    try:
        compiled = asn1tools.compile_dict(module.parsed(), codec)
    except asn1tools.Error as exc:
        raise EncodingError(f"the ASN.1 schema does not compile: {exc!s:.200}") from None
    if len(_COMPILED) >= 8:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[module.text, codec] = compiled
    return compiled


# --- the vmdesc: regenerated when the states imply it exactly ----------------------


def _regenerated(stream: Stream, keys: tuple[str, ...]) -> dict[str, Any]:
    """The vmdesc ``stream``'s device states imply, with ``keys`` in that order."""
    out: dict[str, Any] = {}
    for key in keys:
        if key == "page_size":
            out[key] = stream.page_size
        elif key == "configuration":
            if stream.configuration is None:
                raise EncodingError("a regenerated vmdesc needs the configuration")
            out[key] = vmdesc_struct(stream.configuration)
        else:
            devices = []
            for s in stream.sections:
                if s.kind is SectionKind.FULL:
                    if not isinstance(s.payload, VMState):
                        raise EncodingError(
                            "a regenerated vmdesc needs decoded states", path=s.name
                        )
                    devices.append(vmdesc_entry(s))
            out[key] = devices
    return out


def _vmdesc_value(stream: Stream, faithful: bool) -> tuple[str, Any]:
    text = stream.vmdesc_json()
    assert stream.vmdesc is not None
    for flag, keys in _VMDESC_KEYS.items():
        if not faithful or tuple(stream.vmdesc) != keys:
            continue
        try:
            again = _regenerated(stream, keys)
        except (EncodingError, TypeError):
            break
        if json.dumps(again, separators=(", ", ": ")).encode() == text:
            return ("regenerated", flag)
    return ("text", text)


# --- the stream's value -------------------------------------------------------------


def _state_descs(records: list[Record], out: list[VMStateDescription]) -> None:
    """The descriptions of the device states in ``records``, in the order they are written."""
    for rec in records:
        if isinstance(rec, CommandRecord):
            if rec.packaged is not None:
                _state_descs(rec.packaged, out)
        elif isinstance(rec.payload, VMState):
            out.append(rec.payload.desc)


class _Table:
    """A stream's description table: the rows, each state's row, the descriptions as they
    decode (with the fields' vmdesc ``index``), and the module generated from them."""

    def __init__(self, stream: Stream) -> None:
        descs: list[VMStateDescription] = []
        if stream.configuration is not None:
            descs.append(stream.configuration.desc)
        _state_descs(stream.records, descs)
        self.rows, refs = table_for(descs)
        self.refs = {id(d): r for d, r in zip(descs, refs, strict=True)}
        table = read_descs(self.rows)
        self.indexes = field_indexes(table, list(zip(descs, refs, strict=True)))
        self.table = with_indexes(table, self.indexes)
        # Whether every state decodes with its own description (equal descriptions
        # that differ only in a vmdesc index share a row): the vmdesc then regenerates.
        self.faithful = all(self.table[r] == d for d, r in zip(descs, refs, strict=True))
        self.module = stream_module(self.table)


def _record_values(records: list[Record], refs: dict[int, int]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for rec in records:
        if isinstance(rec, CommandRecord):
            cmd: dict[str, Any] = {"command": rec.command, "data": bytes(rec.data)}
            if rec.packaged is not None:
                cmd["packaged"] = _record_values(rec.packaged, refs)
            out.append(("command", cmd))
            continue
        if not isinstance(rec, Section):
            raise EncodingError(f"record of unknown type {type(rec).__name__}")
        p = rec.payload
        payload: tuple[str, Any]
        if isinstance(p, VMState):
            state = state_value(p, refs[id(p.desc)], rec.name)
            payload = ("device", {"version": p.version_id, "state": state})
        elif isinstance(p, RamPayload):
            payload = ("ram", ram_value(p))
        elif isinstance(p, Opaque):
            payload = ("opaque", {"data": bytes(p.data), "reason": p.reason})
        else:
            raise EncodingError(f"payload of unknown type {type(p).__name__}", path=rec.name)
        out.append(
            (
                "section",
                {
                    "kind": rec.kind.value,
                    "section-id": rec.section_id,
                    "name": name_value(rec.name),
                    "instance-id": rec.instance_id,
                    "version-id": rec.version_id,
                    "footer": rec.footer,
                    "payload": payload,
                },
            )
        )
    return out


def _stream_value(stream: Stream, t: _Table) -> dict[str, Any]:
    refs = t.refs
    v: dict[str, Any] = {
        "version": stream.version,
        "page-size": stream.page_size,
        "eof": stream.eof,
        "ignore-shared": stream.ram.ignore_shared,
        "blocks": block_values(stream.ram.blocks),
        "records": _record_values(stream.records, refs),
        "trailer": bytes(stream.trailer),
    }
    c = stream.configuration
    if c is not None:
        v["configuration"] = {
            "version": c.version_id,
            "state": state_value(c, refs[id(c.desc)], "configuration"),
        }
    if stream.vmdesc is not None:
        v["vmdesc"] = _vmdesc_value(stream, t.faithful)
    return v


class _Reader:
    """Rebuilds records from the decoded value, checking what the types do not say."""

    def __init__(self, table: list[VMStateDescription], ctx: RamContext) -> None:
        self.table = table
        self.ctx = ctx

    def state(self, v: Any, what: str) -> VMState:
        alt, raw = v["state"]
        ref = int(alt[1:]) if alt != "none" else -1
        if not 0 <= ref < len(self.table):
            raise EncodingError(f"{what} has no description", path=what)
        version = read_int(v["version"], f"{what} version", 0, 0xFFFFFFFF)
        return read_state(self.table[ref], version, raw, what)

    def records(self, items: list[Any], depth: int = 0) -> list[Record]:
        if depth > LIMITS.max_packaged_depth:
            raise LimitExceeded("PACKAGED commands nested too deeply")
        if len(items) > LIMITS.max_sections:
            raise LimitExceeded(f"more than {LIMITS.max_sections} records")
        out: list[Record] = []
        for kind, r in items:
            if kind == "command":
                packaged = r.get("packaged")
                out.append(
                    CommandRecord(
                        read_int(r["command"], "command", 0, 0xFFFF),
                        read_bytes(r["data"], "command data"),
                        self.records(packaged, depth + 1) if packaged is not None else None,
                    )
                )
                continue
            name = read_text(r["name"][1], "section name")
            tag, p = r["payload"]
            payload: Any
            if tag == "device":
                payload = self.state(p, name)
            elif tag == "ram":
                payload = ram_of(p, self.ctx, name)
            else:
                payload = Opaque(read_bytes(p["data"], name), read_text(p["reason"], name))
            out.append(
                Section(
                    SectionKind(r["kind"]),
                    read_int(r["section-id"], "section id", 0, 0xFFFFFFFF),
                    name,
                    read_int(r["instance-id"], "instance id", 0, 0xFFFFFFFF),
                    read_int(r["version-id"], "version id", 0, 0xFFFFFFFF),
                    payload,
                    read_bool(r["footer"], "footer"),
                )
            )
        return out


def _stream_of(v: dict[str, Any], table: list[VMStateDescription], source_size: int) -> Stream:
    page_size = read_int(v["page-size"], "page_size", 1, 1 << 30)
    if page_size & (page_size - 1):
        raise EncodingError(f"page_size {page_size} is not a power of two")
    ctx = RamContext(
        page_size=page_size,
        ignore_shared=read_bool(v["ignore-shared"], "ignore_shared"),
        blocks=blocks_of(v["blocks"]),
    )
    reader = _Reader(table, ctx)
    c = v.get("configuration")
    stream = Stream(
        version=read_int(v["version"], "version", 0, 0xFFFFFFFF),
        configuration=reader.state(c, "configuration") if c is not None else None,
        records=reader.records(v["records"]),
        eof=read_bool(v["eof"], "eof"),
        trailer=read_bytes(v["trailer"], "trailer"),
        page_size=page_size,
        ram=ctx,
        source_size=source_size,
    )
    if "vmdesc" in v:
        kind, x = v["vmdesc"]
        if kind == "regenerated":
            stream.vmdesc = _regenerated(stream, _VMDESC_KEYS[x])
        else:
            if len(x) > LIMITS.max_vmdesc_bytes:
                raise LimitExceeded("vmdesc beyond LIMITS.max_vmdesc_bytes")
            vmdesc = json.loads(x)
            if not isinstance(vmdesc, dict):
                raise EncodingError("vmdesc must be a JSON object")
            stream.vmdesc, stream.vmdesc_text = vmdesc, bytes(x)
    return stream


# --- framing -----------------------------------------------------------------------


def schema_text(stream: Stream) -> str:
    """The ASN.1 module ``stream`` is encoded with (its ``Stream`` type is the whole value)."""
    return _Table(stream).module.text


def _encode(stream: Stream, codec: str) -> bytes:
    asn1tools = _asn1tools()
    with paused_gc():  # many small values, no cycles: no collection midway
        t = _Table(stream)
        text = t.module.text
        value = _stream_value(stream, t)
        try:
            descs = _compiled(DESCRIPTIONS, codec).encode(
                "Descriptions", desc_values(t.rows, t.indexes), check_types=False
            )
            body = _compiled(t.module, codec).encode("Stream", value, check_types=False)
        except asn1tools.Error as exc:
            raise EncodingError(f"ASN.1 {codec.upper()} encoding failed: {exc!s:.200}") from None
    head = MAGIC + codec[0].upper().encode() + schema_id(text) + len(descs).to_bytes(4, "big")
    return head + bytes(descs) + bytes(body)


def _decode(data: bytes, codec: str, schema: str | None) -> Stream:
    asn1tools = _asn1tools()
    tag = codec[0].upper().encode()
    if len(data) < _HEAD or data[:4] != MAGIC:
        raise EncodingError(f"not a miglab ASN.1 stream (no {MAGIC!r} header)", offset=0)
    if data[4:5] != tag:
        raise EncodingError(f"ASN.1 codec byte is {data[4:5]!r}, expected {tag!r}", offset=4)
    sid = data[5:13]
    if schema is not None and schema_id(schema) != sid:
        raise EncodingError(
            f"encoded with ASN.1 schema {sid.hex()}, the schema given is {schema_id(schema).hex()}",
            offset=5,
        )
    n = int.from_bytes(data[13:17], "big")
    if n > len(data) - _HEAD:
        raise EncodingError(f"the description table of {n} bytes is cut off", offset=13)

    def run(part: str, at: int, end: int, module: Module, type_name: str) -> Any:
        try:
            return _compiled(module, codec).decode(type_name, data[at:end])
        except asn1tools.Error as exc:
            raise EncodingError(
                f"not valid ASN.1 {codec.upper()} {part}: {exc!s:.160}", offset=at
            ) from None

    def build() -> Stream:
        rows, indexes = desc_rows(
            run("descriptions", _HEAD, _HEAD + n, DESCRIPTIONS, "Descriptions")
        )
        table = with_indexes(read_descs(rows), indexes)
        module = stream_module(table)
        if schema_id(module.text) != sid:
            raise EncodingError(
                f"the descriptions make ASN.1 schema {schema_id(module.text).hex()}, the header "
                f"says {sid.hex()}",
                offset=5,
            )
        value = run("stream", _HEAD + n, len(data), module, "Stream")
        return _stream_of(value, table, len(data))

    with paused_gc():
        return guarded(build)


def encode_ber(stream: Stream) -> bytes:
    """The stream as ASN.1 BER (decodes alone: the module is regenerated from its descriptions)."""
    return _encode(stream, "ber")


def decode_ber(data: bytes) -> Stream:
    """Rebuild the stream from BER."""
    return _decode(bytes(data), "ber", None)


def encode_per(stream: Stream) -> bytes:
    """The stream as ASN.1 aligned PER (decodes alone, as BER does)."""
    return _encode(stream, "per")


def decode_per(data: bytes, *, schema: str | None = None) -> Stream:
    """Rebuild the stream from PER; ``schema``, if given, must be the module it was encoded with.

    Raises:
        EncodingError: a different schema, or bad bytes.
    """
    return _decode(bytes(data), "per", schema)


def sniff_ber(data: bytes) -> bool:
    """True for a miglab BER stream header."""
    return bytes(data[:5]) == MAGIC + b"B"


def sniff_per(data: bytes) -> bool:
    """True for a miglab PER stream header."""
    return bytes(data[:5]) == MAGIC + b"P"
