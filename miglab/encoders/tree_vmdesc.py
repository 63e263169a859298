"""The vmdesc inside a plain tree: written as compact JSON text, read back when first used.

A tree carries the vmdesc as text (:mod:`miglab.encoders.tree`'s ``"vmdesc"`` item).  Parsing
the ~450,000 objects of a big one dominated decoding, so a decoder only checks that the text
is a JSON object and leaves the parse to :attr:`~miglab.stream.model.Stream.vmdesc`'s first
reader; a stream whose vmdesc nobody read writes the same text back.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson

from miglab.errors import EncodingError
from miglab.stream.model import Stream

__all__ = ("defer_vmdesc", "parsed_vmdesc", "vmdesc_text")


def vmdesc_text(stream: Stream) -> str | None:
    """The vmdesc as compact JSON text (orjson: ~10x the stdlib's speed, and shorter), or None.

    The text only has to parse back to the same vmdesc (so a vmdesc decoded
    from a tree and never read is carried as it came); what orjson cannot
    write (integers beyond 64 bits, lone surrogates in names) is written in
    QEMU's spaced form (``": "``), which tells :func:`_vmdesc_value` to read it
    with the standard library.
    """
    deferred = stream.deferred_vmdesc()  # a tree's text, still unparsed: it parses the same
    if deferred is not None:
        return deferred if isinstance(deferred, str) else deferred.decode()
    if stream.vmdesc is None:
        return None
    try:
        return orjson.dumps(stream.vmdesc).decode()
    except TypeError:
        return stream.vmdesc_json().decode()


def _vmdesc_value(text: str | bytes) -> Any:
    """The vmdesc of the tree's text, as the standard library's ``json.loads`` gives it.

    Compact text (what :func:`vmdesc_text` writes with orjson) is read by
    orjson; spaced text, and what orjson refuses (``NaN``, lone surrogates),
    by the standard library, which also keeps integers beyond 64 bits exact.
    """
    spaced = '": ' in text if isinstance(text, str) else b'": ' in text
    if not spaced:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def parsed_vmdesc(text: bytes | str) -> dict[str, Any]:
    """The vmdesc of the tree's text (a deferred one was checked to be a JSON object)."""
    try:
        value = _vmdesc_value(text)
    except (ValueError, RecursionError) as exc:
        raise EncodingError(f"vmdesc is not valid JSON: {exc!s:.120}") from None
    if not isinstance(value, dict):
        raise EncodingError("vmdesc must be a JSON object")
    return value


def defer_vmdesc(stream: Stream, text: str) -> bool:
    """Leave the tree's vmdesc text for :attr:`Stream.vmdesc` to parse when read, if it
    is a JSON object (checked by msgspec without building it: about a fifth of a parse)."""
    try:
        msgspec.json.decode(text, type=msgspec.Raw)
    except (msgspec.DecodeError, RecursionError):
        return False  # NaN, lone surrogates, or not JSON: parsed now, as the error says
    if not text.lstrip(" \t\n\r").startswith("{"):
        return False
    stream.defer_vmdesc(text, parsed_vmdesc)
    return True
