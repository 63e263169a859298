"""``json``: the plain tree (:mod:`miglab.encoders.tree`) as JSON text.

Readable and schema-free.  Byte strings (packed arrays, pages, buffers) are
``{"$b": "<base64>"}`` objects, the only place an object appears below the
top level, so the decoder turns them back without a schema.  The text
starts with ``{"miglab":``, which is how :func:`sniff` knows it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from miglab.encoders.tree import from_plain, guarded, to_plain
from miglab.errors import EncodingError
from miglab.stream.model import Stream

__all__ = ("NAME", "decode", "encode", "sniff")

NAME = "json"
_PREFIX = b'{"miglab":'


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(obj).decode("ascii")}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$b" in obj:
        try:
            return base64.b64decode(obj["$b"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise EncodingError("'$b' must hold base64 text") from None
    return obj


def encode(stream: Stream) -> bytes:
    """The stream as compact JSON (UTF-8)."""
    tree = to_plain(stream)
    try:
        return json.dumps(tree, default=_default, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"cannot encode the tree as JSON: {exc}") from None


def decode(data: bytes) -> Stream:
    """Rebuild the stream from its JSON text."""
    tree = guarded(_loads, data)
    return from_plain(tree, len(data))


def _loads(data: bytes) -> Any:
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
