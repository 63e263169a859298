"""``msgpack``: the plain tree (:mod:`miglab.encoders.tree`) as MessagePack.

Schema-free and binary: byte strings are ``bin`` objects, integers take the
shortest encoding.  The top-level map's first key is ``"miglab"``, which is
how :func:`sniff` knows it.  The codec is msgspec's (in C, about three times
msgpack-python's speed here; the bytes are the same MessagePack, which any
library reads).  Declared lengths are checked against the input left before
anything is allocated, and nesting is bounded by the interpreter's recursion
limit.
"""

from __future__ import annotations

from typing import Any

import msgspec

from miglab.encoders.tree import from_plain, guarded, to_plain
from miglab.errors import EncodingError
from miglab.stream.model import Stream
from miglab.vmstate.layout import paused_gc

__all__ = ("NAME", "decode", "encode", "sniff")

NAME = "msgpack"
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


def encode(stream: Stream) -> bytes:
    """The stream as MessagePack."""
    try:
        return _ENCODER.encode(to_plain(stream))
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot encode the tree as MessagePack: {exc}") from None


def decode(data: bytes) -> Stream:
    """Rebuild the stream from MessagePack."""
    with paused_gc():  # the parse builds many small lists: no collection midway
        return from_plain(guarded(_unpack, data), len(data))


def _unpack(data: bytes) -> Any:
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise EncodingError(f"not valid MessagePack: {exc!s:.120}") from None


def sniff(data: bytes) -> bool:
    """True when ``data`` is a map whose first key is ``"miglab"``."""
    return len(data) > 8 and 0x80 <= data[0] <= 0x8F and bytes(data[1:8]) == b"\xa6miglab"
