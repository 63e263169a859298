"""``cbor``: the plain tree (:mod:`miglab.encoders.tree`) as CBOR (RFC 8949).

Schema-free and binary: byte strings are major type 2, integers take the
shortest encoding.  The item is prefixed by the self-described CBOR tag
55799 (the tag's head only, so decoding keeps plain lists), whose bytes
``d9 d9 f7`` are how :func:`sniff` knows it.  The codec is cbor2's C
extension; a decode error carries the byte offset of the item that failed.
"""

from __future__ import annotations

import io
from typing import IO, Any, cast

import cbor2

from miglab.encoders.tree import from_plain, guarded, to_plain
from miglab.errors import EncodingError
from miglab.stream.model import Stream
from miglab.vmstate.layout import paused_gc

__all__ = ("NAME", "decode", "encode", "sniff")

NAME = "cbor"
_MAGIC = b"\xd9\xd9\xf7"  # tag 55799, "self-described CBOR" (RFC 8949 3.4.6)


def encode(stream: Stream) -> bytes:
    """The stream as CBOR."""
    try:
        out: bytes = _MAGIC + cbor2.dumps(to_plain(stream))
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise EncodingError(f"cannot encode the tree as CBOR: {exc}") from None
    return out


def decode(data: bytes) -> Stream:
    """Rebuild the stream from CBOR."""
    with paused_gc():  # the parse builds many small lists: no collection midway
        return from_plain(guarded(_load, data), len(data))


def _refuse(decoder: Any, *_: Any) -> Any:
    raise cbor2.CBORDecodeError("shared or string references are not part of a miglab tree")


# Shared values (tags 28/29) and string references (tags 25/256) let a few
# bytes name one item many times: the tree would be walked and written once
# per reference (13 KB became 697 MB).  encode() never writes them.
_NO_REFERENCES = {25: _refuse, 28: _refuse, 29: _refuse, 256: _refuse}


def _load(data: bytes) -> Any:
    if bytes(data[:3]) != _MAGIC:
        raise EncodingError("CBOR tree must start with the self-described tag (d9 d9 f7)", offset=0)
    body = memoryview(data)[len(_MAGIC) :]
    try:
        return cbor2.loads(body, semantic_decoders=_NO_REFERENCES)
    except _ERRORS as exc:
        at = len(_MAGIC) + _failing_offset(body)
        raise EncodingError(f"not valid CBOR: {exc!s:.160}", offset=at) from None


_ERRORS = (cbor2.CBORDecodeError, ValueError, EOFError)


class _Tracked(io.RawIOBase):
    """The input, read the way cbor2 reads a stream it cannot seek: a head or a
    payload at a time, remembering where the last read began."""

    def __init__(self, data: memoryview) -> None:
        super().__init__()
        self._data = data
        self.pos = 0
        self.last = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.last = self.pos
        end = len(self._data) if size < 0 else min(self.pos + size, len(self._data))
        out = bytes(self._data[self.pos : end])
        self.pos = end
        return out


def _failing_offset(body: memoryview) -> int:
    """Where in ``body`` the item that failed to decode begins (its head, or the
    payload that is short or bad).

    cbor2's errors carry no position, so only on failure the input is decoded
    once more from an unseekable reader, which cbor2 reads item by item.
    """
    src = _Tracked(body)
    try:
        cbor2.CBORDecoder(cast(IO[bytes], src), semantic_decoders=_NO_REFERENCES).decode()
    except _ERRORS:
        return src.last
    return src.pos  # not reached: the same bytes fail the same way


def sniff(data: bytes) -> bool:
    """True when ``data`` starts with the self-described CBOR tag."""
    return bytes(data[:3]) == _MAGIC
