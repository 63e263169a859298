"""``asn1-ber`` and ``asn1-per``: the plain tree as ASN.1, through asn1tools.

The ASN.1 module is generated as text from :data:`ALTERNATIVES` — one
``CHOICE`` alternative per kind of leaf the plain tree
(:mod:`miglab.encoders.tree`) holds, plus lists and the top-level map — and
compiled with :func:`asn1tools.compile_string` on first use (importing
asn1tools and compiling cost ~0.25 s; the result is cached per module text
and codec, so only a process that encodes or decodes ASN.1 pays).  Byte strings are ``OCTET
STRING``, so pages and packed arrays stay binary.

Both encodings start with a small header naming the schema they need::

    "MLA1"  codec ("B" = BER, "P" = PER)  schema id (8 bytes: sha256 of the module text)

BER is tag-length-value and the module ships with miglab, so ``asn1-ber``
decodes without being given anything.  PER carries no tags and no lengths
it can derive from the schema: its bytes mean nothing without the module,
so ``asn1-per`` is schema-bound — :func:`decode_per` needs ``schema=`` (the
module text, :func:`schema_text`) and fails with an
:class:`~miglab.errors.EncodingError` naming the schema id when it is
missing or different.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from miglab.encoders.tree import from_plain, guarded, to_plain
from miglab.errors import EncodingError, LimitExceeded
from miglab.limits import LIMITS

if TYPE_CHECKING:
    from miglab.stream.model import Stream

__all__ = (
    "ALTERNATIVES",
    "MAGIC",
    "decode_ber",
    "decode_per",
    "encode_ber",
    "encode_per",
    "schema_id",
    "schema_text",
    "sniff_ber",
    "sniff_per",
)

MAGIC = b"MLA1"
# Plain-tree value kinds -> ASN.1 types.  "Value" and "Entry" refer back to the module.
ALTERNATIVES: tuple[tuple[str, str], ...] = (
    ("null", "NULL"),
    ("bool", "BOOLEAN"),
    ("int", "INTEGER"),
    ("bytes", "OCTET STRING"),
    ("text", "UTF8String"),
    ("list", "SEQUENCE OF Value"),
    ("map", "SEQUENCE OF Entry"),
)


def schema_text() -> str:
    """The ASN.1 module both encodings use, generated from :data:`ALTERNATIVES`."""
    alts = ",\n".join(f"    {name} {asn1}" for name, asn1 in ALTERNATIVES)
    return (
        "MiglabTree DEFINITIONS AUTOMATIC TAGS ::= BEGIN\n"
        f"Value ::= CHOICE {{\n{alts}\n}}\n"
        "Entry ::= SEQUENCE { key UTF8String, value Value }\n"
        "END\n"
    )


def schema_id(text: str | None = None) -> bytes:
    """The 8-byte id of a module text (default: :func:`schema_text`)."""
    return hashlib.sha256((text if text is not None else schema_text()).encode()).digest()[:8]


def _asn1tools() -> Any:
    import asn1tools

    return asn1tools


@lru_cache(maxsize=8)
def _compiled(text: str, codec: str) -> Any:
    asn1tools = _asn1tools()
    try:
        return asn1tools.compile_string(text, codec)
    except asn1tools.Error as exc:
        raise EncodingError(f"the ASN.1 schema does not compile: {exc}") from None


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
    raise EncodingError(f"cannot carry a {t.__name__} in ASN.1")


def _from_asn1(v: Any, depth: int = 0) -> Any:
    if depth > 4 * LIMITS.max_depth:
        raise LimitExceeded(f"ASN.1 values nested deeper than {4 * LIMITS.max_depth}")
    kind, x = v
    if kind == "list":
        return [_from_asn1(i, depth + 1) for i in x]
    if kind == "map":
        return {e["key"]: _from_asn1(e["value"], depth + 1) for e in x}
    return x


# --- framing -----------------------------------------------------------------------


def _encode(stream: Stream, codec: str, text: str) -> bytes:
    value = _to_asn1(to_plain(stream))
    compiled = _compiled(text, codec)
    try:
        body = compiled.encode("Value", value)
    except _asn1tools().Error as exc:
        raise EncodingError(f"ASN.1 {codec.upper()} encoding failed: {exc}") from None
    return MAGIC + codec[0].upper().encode() + schema_id(text) + bytes(body)


def _decode(data: bytes, codec: str, text: str) -> Stream:
    data = bytes(data)
    _check_header(data, codec, text)

    compiled = _compiled(text, codec)

    def run() -> Any:
        try:
            return _from_asn1(compiled.decode("Value", data[13:]))
        except _asn1tools().Error as exc:
            raise EncodingError(
                f"not valid ASN.1 {codec.upper()}: {exc!s:.160}", offset=13
            ) from None

    return from_plain(guarded(run), len(data))


def _check_header(data: bytes, codec: str, text: str) -> None:
    if len(data) < 13 or data[:4] != MAGIC:
        raise EncodingError(f"not a miglab ASN.1 stream (no {MAGIC!r} header)", offset=0)
    tag = codec[0].upper().encode()
    if data[4:5] != tag:
        raise EncodingError(f"ASN.1 codec byte is {data[4:5]!r}, expected {tag!r}", offset=4)
    if data[5:13] != schema_id(text):
        raise EncodingError(
            f"encoded with ASN.1 schema {data[5:13].hex()}, the schema given is {schema_id(text).hex()}",
            offset=5,
        )


def encode_ber(stream: Stream) -> bytes:
    """The stream as ASN.1 BER (self-contained: miglab ships the module)."""
    return _encode(stream, "ber", schema_text())


def decode_ber(data: bytes) -> Stream:
    """Rebuild the stream from BER."""
    return _decode(data, "ber", schema_text())


def encode_per(stream: Stream) -> bytes:
    """The stream as ASN.1 aligned PER; decoding it needs :func:`schema_text`."""
    return _encode(stream, "per", schema_text())


def decode_per(data: bytes, *, schema: str | None = None) -> Stream:
    """Rebuild the stream from PER, given the ASN.1 module it was encoded with.

    Raises:
        EncodingError: no schema given, a different one, or bad bytes.
    """
    if schema is None:
        sid = bytes(data[5:13]).hex() if len(data) >= 13 else "?"
        raise EncodingError(
            f"asn1-per is not self-describing: decoding needs ASN.1 schema {sid}; "
            "pass schema=miglab.encoders.asn1.schema_text()"
        )
    return _decode(data, "per", schema)


def sniff_ber(data: bytes) -> bool:
    """True for a miglab BER stream header."""
    return bytes(data[:5]) == MAGIC + b"B"


def sniff_per(data: bytes) -> bool:
    """True for a miglab PER stream header."""
    return bytes(data[:5]) == MAGIC + b"P"
