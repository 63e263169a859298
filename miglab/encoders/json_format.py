"""``json``: the plain tree (:mod:`miglab.encoders.tree`) as JSON text.

Readable and schema-free.  Byte strings (packed arrays, pages, buffers) are
``{"$b": "<base64>"}`` objects, the only place an object appears below the
top level, so the decoder turns them back without a schema.  The text
starts with ``{"miglab":``, which is how :func:`sniff` knows it.

The codec is orjson (in C, several times the standard library's speed);
what it refuses — text with lone surrogates, which only a hand-made name
has — goes through the standard library, whose JSON it is too.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import orjson

from miglab.encoders.tree import from_plain, guarded, to_plain
from miglab.errors import EncodingError
from miglab.stream.model import Stream
from miglab.vmstate.layout import paused_gc

__all__ = ("NAME", "decode", "encode", "sniff")

NAME = "json"
_PREFIX = b'{"miglab":'


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(obj).decode("ascii")}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _bytes(obj: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(obj["$b"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise EncodingError("'$b' must hold base64 text") from None


def _hook(obj: dict[str, Any]) -> Any:
    return _bytes(obj) if len(obj) == 1 and "$b" in obj else obj


_LONG = 16  # a shorter list is looked through item by item, cheaper than a failed sum()


def _unwrap(node: Any) -> Any:
    """``node`` (a map or list from orjson) with every ``{"$b": ...}`` map made bytes."""
    if type(node) is dict:
        if len(node) == 1 and "$b" in node:
            return _bytes(node)
        for k, v in node.items():
            if type(v) is dict or type(v) is list:
                node[k] = _unwrap(v)  # a value replaced, no key added: iteration stays valid
        return node
    if len(node) > _LONG:
        # Integer arrays are most of the items: sum() tells at C speed that a list
        # holds numbers only (of what orjson makes, adding anything else to 0 raises).
        try:
            sum(node)
        except TypeError:
            pass
        else:
            return node
    for i, v in enumerate(node):
        if type(v) is dict or type(v) is list:
            node[i] = _unwrap(v)
    return node


def encode(stream: Stream) -> bytes:
    """The stream as compact JSON (UTF-8)."""
    tree = to_plain(stream)
    try:
        return orjson.dumps(tree, default=_default)
    except TypeError:
        pass  # a lone surrogate in a name: the standard library escapes it
    try:
        return json.dumps(tree, default=_default, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"cannot encode the tree as JSON: {exc}") from None


def decode(data: bytes) -> Stream:
    """Rebuild the stream from its JSON text."""
    with paused_gc():  # the parse builds many small lists: no collection midway
        return from_plain(guarded(_loads, data), len(data))


def _loads(data: bytes) -> Any:
    try:
        tree = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _loads_stdlib(data)  # what orjson refuses but JSON allows, or the precise error
    return _unwrap(tree) if type(tree) is dict or type(tree) is list else tree


def _loads_stdlib(data: bytes) -> Any:
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"JSON text is not UTF-8 ({exc.reason})", offset=exc.start) from None
    try:
        return json.loads(text, object_hook=_hook)
    except json.JSONDecodeError as exc:
        raise EncodingError(f"not valid JSON: {exc.msg}", offset=exc.pos) from None


def sniff(data: bytes) -> bool:
    """True when ``data`` starts like a miglab JSON tree."""
    return bytes(data[: len(_PREFIX)]) == _PREFIX
