"""``cbor``: the plain tree (:mod:`miglab.encoders.tree`) as CBOR (RFC 8949).

Schema-free and binary: byte strings are major type 2, integers take the
shortest encoding.  The item is prefixed by the self-described CBOR tag
55799 (the tag's head only, so decoding keeps plain lists), whose bytes
``d9 d9 f7`` are how :func:`sniff` knows it.

Two codecs, both in C.  The tree is written, and read back, by cbrrr as
DAG-CBOR, the deterministic subset of CBOR: map keys in length-first order,
64-bit floats, no tags (about 1.4x cbor2's speed writing, 1.7x reading, on
the data/ streams' device state).  What that subset cannot hold (NaN, an
integer beyond 64 bits, a lone surrogate) is written by cbor2's C extension,
and CBOR that is not DAG-CBOR (another writer's key order, half floats, any
tag) is read by cbor2, so every CBOR item reads; a decode error carries the
byte offset of the item that failed (found by cbor2).
"""

from __future__ import annotations

import io
from typing import IO, Any, cast

import cbor2
import cbrrr

from miglab.encoders.tree import from_plain, guarded, to_plain
from miglab.errors import EncodingError
from miglab.stream.model import Stream
from miglab.vmstate.layout import paused_gc

__all__ = ("NAME", "decode", "encode", "sniff")

NAME = "cbor"
_MAGIC = b"\xd9\xd9\xf7"  # tag 55799, "self-described CBOR" (RFC 8949 3.4.6)


def encode(stream: Stream) -> bytes:
    """The stream as CBOR."""
    tree = to_plain(stream)
    try:
        return _MAGIC + cbrrr.encode_dag_cbor(tree)
    except (TypeError, ValueError):
        pass  # outside DAG-CBOR (NaN, a wide integer, a lone surrogate): plain CBOR
    try:
        out: bytes = _MAGIC + cbor2.dumps(tree)
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


class _Tagged(Exception):
    """A tag 42 item (DAG-CBOR's one tag): left to cbor2, like every other tag."""


def _no_cid(_: bytes) -> Any:
    raise _Tagged


def _load(data: bytes) -> Any:
    if bytes(data[:3]) != _MAGIC:
        raise EncodingError("CBOR tree must start with the self-described tag (d9 d9 f7)", offset=0)
    body = memoryview(data)[len(_MAGIC) :]
    try:
        # declared lengths are checked against the bytes left; nesting is not recursion
        return cbrrr.decode_dag_cbor(bytes(body), cid_ctor=_no_cid)
    except (ValueError, TypeError, _Tagged):  # CbrrrDecodeError is a ValueError
        pass  # not DAG-CBOR (or not CBOR at all): cbor2 reads it, or says where it fails
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
