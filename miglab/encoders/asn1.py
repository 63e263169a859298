"""``asn1-ber`` and ``asn1-per``: the plain tree as ASN.1, typed by the stream's descriptions.

The ASN.1 module is generated from the descriptions a stream carries: one
``SEQUENCE`` type per description (device type and version) whose
components are the fields, typed from the description (``INTEGER
(0..4294967295)`` for a ``uint32``, ``OCTET STRING (SIZE(16))`` for a fixed
buffer, ``SEQUENCE (SIZE(128)) OF ...`` for a fixed array, the nested
struct's type, subsections and fields newer than the oldest version
``OPTIONAL``), plus a generic ``Value`` type for the record layer around the
states (the plain tree of :mod:`miglab.encoders.tree`).  Because every
integer has its range, aligned PER writes a ``uint8`` in one octet, a bool
in one bit and a small ``uint32`` in two octets: PER output is smaller than
QEMU's own stream.

asn1tools is imported and a module compiled on first use (importing it and compiling
cost ~0.25 s; compiled modules are cached per module text and codec), so only a process
that encodes or decodes ASN.1 pays.

Component names are the field names made into ASN.1 identifiers
injectively (:func:`identifier`: ``mac_reg[0]`` is ``mmac-5freg-5b0-5d``);
device states go from and to these typed values through visitors on the
one walk (:class:`Asn1OutputVisitor`, :class:`Asn1InputVisitor`, the
object visitors with identifiers for names).

Both encodings start with a header::

    "MLA2"  codec ("B" = BER, "P" = PER)  schema id (8 bytes: sha256 of the module text)

BER then carries the module itself (be32 length, UTF-8 text) before the
value, so ``asn1-ber`` decodes alone.  PER carries no tags and no lengths it
can derive from the module: its bytes mean nothing without it, so
``asn1-per`` is schema-bound -- :func:`decode_per` needs ``schema=`` (the
module text, :func:`schema_text` of the stream encoded) and fails with an
:class:`~miglab.errors.EncodingError` naming the schema id when it is
missing or different.
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache
from typing import Any

from miglab.encoders.desc_table import read_descs
from miglab.encoders.tree import from_plain, guarded, to_plain
from miglab.errors import EncodingError, LimitExceeded, MigrationFormatError, VisitorError
from miglab.limits import LIMITS
from miglab.stream.model import Stream
from miglab.visitors.base import int_range
from miglab.visitors.object_visitor import ObjectInputVisitor, ObjectOutputVisitor
from miglab.vmstate.description import VMStateDescription, VMStateField
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = (
    "ALTERNATIVES",
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

MAGIC = b"MLA2"
# Plain-tree value kinds of the record layer -> ASN.1 types.
ALTERNATIVES: tuple[tuple[str, str], ...] = (
    ("null", "NULL"),
    ("bool", "BOOLEAN"),
    ("int", "INTEGER"),
    ("bytes", "OCTET STRING"),
    ("text", "UTF8String"),
    ("list", "SEQUENCE OF Value"),
    ("map", "SEQUENCE OF Entry"),
    ("state", "State"),  # a device state, typed by its description
)
_F64 = struct.Struct(">d")
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


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


# --- the module ------------------------------------------------------------------


def _int_type(f: VMStateField) -> str:
    if f.size <= 0:
        return "INTEGER"
    lo, hi = int_range(f.size, f.signed)
    return f"INTEGER ({lo}..{hi})"


def _one(f: VMStateField, index: dict[int, int]) -> str:
    """The ASN.1 type of one element of field ``f``."""
    kind = f.kind
    if kind == "int":
        return _int_type(f)
    if kind == "bool":
        return "BOOLEAN"
    if kind == "float":
        return "OCTET STRING (SIZE(8))"  # the IEEE-754 bits, exactly
    if kind == "bytes":
        return "OCTET STRING" if f.size_field is not None else f"OCTET STRING (SIZE({f.size}))"
    if kind == "str":
        return "UTF8String"
    if kind == "null":
        return "INTEGER (0..255)"  # the nullptr marker byte
    assert f.struct is not None
    return f"T{index[id(f.struct)]}"


def _field_type(f: VMStateField, index: dict[int, int]) -> str:
    if f.elements is not None:
        parts = ", ".join(f"e{i} T{index[id(e)]}" for i, e in enumerate(f.elements))
        return f"SEQUENCE {{ {parts} }}"
    if f.num_field is not None:
        return f"SEQUENCE OF {_one(f, index)}"
    if f.num is not None:
        return f"SEQUENCE (SIZE({f.num})) OF {_one(f, index)}"
    return _one(f, index)


def _module(table: list[VMStateDescription]) -> str:
    index = {id(d): i for i, d in enumerate(table)}
    alts = ",\n".join(f"    {name} {asn1}" for name, asn1 in ALTERNATIVES)
    states = ", ".join(f"t{i} T{i}" for i in range(len(table))) or "none NULL"
    lines = [
        "MiglabStream DEFINITIONS AUTOMATIC TAGS ::= BEGIN",
        f"Value ::= CHOICE {{\n{alts}\n}}",
        "Entry ::= SEQUENCE { key UTF8String, value Value }",
        f"State ::= CHOICE {{ {states} }}",
    ]
    for i, d in enumerate(table):
        parts = []
        for f in d.fields:
            optional = " OPTIONAL" if f.version_id > 0 else ""
            parts.append(f"    {identifier(f.name)} {_field_type(f, index)}{optional}")
        for sd in d.subsections:
            parts.append(f"    {identifier(sd.name)} T{index[id(sd)]} OPTIONAL")
        comment = d.name.encode("ascii", "replace").decode().replace("--", "- -")
        body = ",\n".join(parts)
        lines.append(f"-- {comment} version {d.version_id}\nT{i} ::= SEQUENCE {{\n{body}\n}}")
    lines.append("END")
    return "\n".join(lines) + "\n"


def schema_text(stream: Stream) -> str:
    """The ASN.1 module ``stream`` is encoded with (what :func:`decode_per` needs)."""
    return _module(read_descs(to_plain(stream)["descs"]))


def schema_id(text: str) -> bytes:
    """The 8-byte id of a module text."""
    return hashlib.sha256(text.encode()).digest()[:8]


def _asn1tools() -> Any:
    import asn1tools

    return asn1tools


@lru_cache(maxsize=8)
def _compiled(text: str, codec: str) -> Any:
    asn1tools = _asn1tools()
    try:
        return asn1tools.compile_string(text, codec)
    except _asn1tools().Error as exc:
        raise EncodingError(f"the ASN.1 schema does not compile: {exc!s:.200}") from None


# --- device states: object visitors with identifiers for names --------------------


class Asn1OutputVisitor(ObjectOutputVisitor):
    """The object tree of a state as the module's typed value.

    Members are named by :func:`identifier`; floats are their 8 IEEE bytes;
    an array of structs with one description per element is a ``SEQUENCE``
    of ``e0``, ``e1``, ... (each its own type).
    """

    takes_runs = False  # every member is renamed on its way in
    describes = True

    def __init__(self) -> None:
        super().__init__()
        self._field: VMStateField | None = None

    def describe_field(self, field: Any) -> None:
        self._field = field

    def _put(self, name: str | None, value: Any) -> None:
        if name is not None:
            name = identifier(name)
        elif self._stack and type(self._stack[-1]) is dict:
            name = f"e{self._index[-1]}"  # an element of a per-element-typed array
        super()._put(name, value)

    def start_list(self, name: str | None, length: int | None) -> int:
        f = self._field
        if name is None or f is None or f.elements is None or length is None:
            return super().start_list(name, length)
        node: dict[str, Any] = {}
        self._put(name, node)
        self._stack.append(node)
        self._push(name)
        self._index.append(0)
        return length

    def type_float64(self, name: str | None, value: float | None) -> float:
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise self.error(f"expected a float, got {value!r}", self.member(name))
        self._put(name, _F64.pack(value))
        return float(value)


class Asn1InputVisitor(ObjectInputVisitor):
    """Reads a state back from the module's typed value, strictly (see the output visitor)."""

    takes_runs = False
    describes = True

    def __init__(self, tree: Any) -> None:
        super().__init__(tree)
        self._field: VMStateField | None = None

    def describe_field(self, field: Any) -> None:
        self._field = field

    def _get(self, name: str | None) -> Any:
        if name is not None:
            return super()._get(identifier(name))
        return super()._get(name)

    def optional(self, name: str, present: bool) -> bool:
        return super().optional(identifier(name), present)

    def start_list(self, name: str | None, length: int | None) -> int:
        f = self._field
        if name is None or f is None or f.elements is None:
            return super().start_list(name, length)
        node = self._get(name)
        keys = [f"e{i}" for i in range(len(f.elements))]
        if not isinstance(node, dict) or sorted(node) != sorted(keys):
            raise self.error(f"expected members {', '.join(keys)}", self.member(name))
        items = [node[k] for k in keys]
        self._stack.append(items)
        self._seen.append(None)
        self._push(name)
        self._index.append(0)
        return len(items)

    def type_float64(self, name: str | None, value: float | None) -> float:
        got = super()._get(identifier(name) if name is not None else None)
        if not isinstance(got, bytes) or len(got) != 8:
            raise self.error("expected the 8 bytes of a double", self.member(name))
        return float(_F64.unpack(got)[0])


class _Typed:
    """A device state's typed value and its description's index (the CHOICE alternative)."""

    __slots__ = ("ref", "value")

    def __init__(self, ref: int, value: Any) -> None:
        self.ref = ref
        self.value = value


def _make_state(st: VMState, ref: int, path: str) -> _Typed:
    v = Asn1OutputVisitor()
    try:
        visit_vmstate(v, st.desc, st, st.version_id)
    except VisitorError as exc:
        raise EncodingError(exc.message, path=f"{path}.{exc.path}" if exc.path else path) from None
    return _Typed(ref, v.complete())


def _read_state(desc: VMStateDescription, version: int, raw: Any, path: str) -> VMState:
    if type(raw) is not dict:
        raise EncodingError(f"a state must be a map, got {type(raw).__name__}", path=path)
    try:
        return visit_vmstate(Asn1InputVisitor(raw), desc, None, version)
    except (VisitorError, MigrationFormatError) as exc:
        raise EncodingError(exc.message, path=f"{path}.{exc.path}" if exc.path else path) from None


# --- plain tree <-> asn1tools values ---------------------------------------------


def _to_asn1(v: Any) -> tuple[str, Any]:
    if v is None:
        return ("null", None)
    t = type(v)
    if t is bool:
        return ("bool", v)
    if t is int:
        return ("int", v)
    if t is bytes:
        return ("bytes", v)
    if t is str:
        return ("text", v)
    if t is list:
        return ("list", [_to_asn1(x) for x in v])
    if t is dict:
        return ("map", [{"key": k, "value": _to_asn1(x)} for k, x in v.items()])
    if t is _Typed:
        return ("state", (f"t{v.ref}", v.value))
    raise EncodingError(f"cannot carry a {t.__name__} in ASN.1")


def _from_asn1(v: Any, depth: int = 0) -> Any:
    if depth > 4 * LIMITS.max_depth:
        raise LimitExceeded(f"ASN.1 values nested deeper than {4 * LIMITS.max_depth}")
    kind, x = v
    if kind == "list":
        return [_from_asn1(i, depth + 1) for i in x]
    if kind == "map":
        return {e["key"]: _from_asn1(e["value"], depth + 1) for e in x}
    if kind == "state":
        return x[1]  # the description ref next to it says which type it is
    return x


# --- framing -----------------------------------------------------------------------


def _encode(stream: Stream, codec: str) -> tuple[bytes, str]:
    tree = to_plain(stream, make_state=_make_state)
    text = _module(read_descs(tree["descs"]))
    try:
        body = _compiled(text, codec).encode("Value", _to_asn1(tree))
    except _asn1tools().Error as exc:
        raise EncodingError(f"ASN.1 {codec.upper()} encoding failed: {exc!s:.200}") from None
    return MAGIC + codec[0].upper().encode() + schema_id(text) + bytes(body), text


def _decode(body: bytes, at: int, codec: str, text: str, size: int) -> Stream:
    def run() -> Any:
        try:
            return _from_asn1(_compiled(text, codec).decode("Value", body))
        except _asn1tools().Error as exc:
            raise EncodingError(
                f"not valid ASN.1 {codec.upper()}: {exc!s:.160}", offset=at
            ) from None

    return from_plain(guarded(run), size, read_state=_read_state)


def _check_header(data: bytes, codec: str) -> None:
    if len(data) < 13 or data[:4] != MAGIC:
        raise EncodingError(f"not a miglab ASN.1 stream (no {MAGIC!r} header)", offset=0)
    tag = codec[0].upper().encode()
    if data[4:5] != tag:
        raise EncodingError(f"ASN.1 codec byte is {data[4:5]!r}, expected {tag!r}", offset=4)


def encode_ber(stream: Stream) -> bytes:
    """The stream as ASN.1 BER, its module carried after the header (self-contained)."""
    out, text = _encode(stream, "ber")
    raw = text.encode()
    return out[:13] + len(raw).to_bytes(4, "big") + raw + out[13:]


def decode_ber(data: bytes) -> Stream:
    """Rebuild the stream from BER (the module comes with it)."""
    data = bytes(data)
    _check_header(data, "ber")
    if len(data) < 17:
        raise EncodingError("the ASN.1 module's length is cut off", offset=13)
    n = int.from_bytes(data[13:17], "big")
    if n > len(data) - 17:
        raise EncodingError(f"the ASN.1 module of {n} bytes is cut off", offset=13)
    raw = data[17 : 17 + n]
    if hashlib.sha256(raw).digest()[:8] != data[5:13]:
        raise EncodingError("the ASN.1 module does not match its schema id", offset=17)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise EncodingError("the ASN.1 module is not UTF-8", offset=17) from None
    return _decode(data[17 + n :], 17 + n, "ber", text, len(data))


def encode_per(stream: Stream) -> bytes:
    """The stream as ASN.1 aligned PER; decoding it needs :func:`schema_text` of the stream."""
    return _encode(stream, "per")[0]


def decode_per(data: bytes, *, schema: str | None = None) -> Stream:
    """Rebuild the stream from PER, given the ASN.1 module it was encoded with.

    Raises:
        EncodingError: no schema given, a different one, or bad bytes.
    """
    data = bytes(data)
    if schema is None:
        sid = data[5:13].hex() if len(data) >= 13 else "?"
        raise EncodingError(
            f"asn1-per is not self-describing: decoding needs ASN.1 schema {sid}; "
            "pass schema=miglab.encoders.asn1.schema_text(stream)"
        )
    _check_header(data, "per")
    if data[5:13] != schema_id(schema):
        raise EncodingError(
            f"encoded with ASN.1 schema {data[5:13].hex()}, the schema given is "
            f"{schema_id(schema).hex()}",
            offset=5,
        )
    return _decode(data[13:], 13, "per", schema, len(data))


def sniff_ber(data: bytes) -> bool:
    """True for a miglab BER stream header."""
    return bytes(data[:5]) == MAGIC + b"B"


def sniff_per(data: bytes) -> bool:
    """True for a miglab PER stream header."""
    return bytes(data[:5]) == MAGIC + b"P"
