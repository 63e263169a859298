"""``msgpack``: the plain tree (:mod:`miglab.encoders.tree`) as MessagePack.

Schema-free and binary: byte strings are ``bin`` objects, integers take the
shortest encoding.  The top-level map's first key is ``"miglab"``, which is
how :func:`sniff` knows it.  Lengths in the input are bounded by the input's
own size (msgpack's ``max_*_len`` defaults) and nesting by its fixed stack.
"""

from __future__ import annotations

from typing import Any

import msgpack

from miglab.encoders.tree import from_plain, guarded, to_plain
from miglab.errors import EncodingError
from miglab.stream.model import Stream
from miglab.vmstate.layout import paused_gc

__all__ = ("NAME", "decode", "encode", "sniff")

NAME = "msgpack"


def encode(stream: Stream) -> bytes:
    """The stream as MessagePack."""
    try:
        out: bytes = msgpack.packb(to_plain(stream), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot encode the tree as MessagePack: {exc}") from None
    return out


def decode(data: bytes) -> Stream:
    """Rebuild the stream from MessagePack."""
    with paused_gc():  # the parse builds many small lists: no collection midway
        return from_plain(guarded(_unpack, data), len(data))


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (msgpack.UnpackException, ValueError) as exc:
        raise EncodingError(f"not valid MessagePack: {type(exc).__name__}: {exc!s:.120}") from None


def sniff(data: bytes) -> bool:
    """True when ``data`` is a map whose first key is ``"miglab"``."""
    return len(data) > 8 and 0x80 <= data[0] <= 0x8F and bytes(data[1:8]) == b"\xa6miglab"
