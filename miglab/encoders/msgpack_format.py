"""``msgpack``: the plain tree (:mod:`miglab.encoders.tree`) as MessagePack.

Schema-free and binary: byte strings are ``bin`` objects, integers take the
shortest encoding.  The top-level map's first key is ``"miglab"``, which is
how :func:`sniff` knows it.  The codec is msgspec's (in C, about three times
msgpack-python's speed here; the bytes are the same MessagePack, which any
library reads).  Declared lengths are checked against the input left before
anything is allocated, and nesting is bounded by the interpreter's recursion
limit.

Decoding reads the tree around the device states with msgspec types of its
records (:class:`_Tree`), leaving each state's bytes as they are
(:class:`msgspec.Raw`); once the description table is read, each state is
decoded straight into the msgspec types of its description
(:mod:`miglab.encoders.typed_states`), which check every value as it is
parsed, so no plain map of it is built.  A state its types refuse is decoded
plainly and read by the walk, which names the member; a tree the record types
refuse is decoded plainly as a whole and read as before, so every error is
the one the plain reading gives.
"""

from __future__ import annotations

from typing import Any

import msgspec

from miglab.encoders.tree import from_plain, guarded, state_from_plain, to_plain
from miglab.encoders.typed_states import plan_of, state_decoder
from miglab.errors import EncodingError
from miglab.stream.model import Stream
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.layout import paused_gc
from miglab.vmstate.state import VMState

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
        try:
            top = _TREE.decode(data)
        except (msgspec.DecodeError, RecursionError):
            top = None  # not a tree of the record types: the plain reading says why
        if top is not None:
            try:
                return from_plain(_plain_top(top), len(data), read_state=_read_state)
            except _Malformed:
                pass  # malformed MessagePack inside a state: the plain parse below says where
        return from_plain(guarded(_unpack, data), len(data))


# The tree's records as msgspec types (the shape of miglab.encoders.tree's
# docstring): each a tagged array, each device state left as its bytes.
class _D(msgspec.Struct, array_like=True, tag="D", forbid_unknown_fields=True, gc=False):
    ref: Any
    version: Any
    state: msgspec.Raw


class _O(msgspec.Struct, array_like=True, tag="O", forbid_unknown_fields=True, gc=False):
    data: Any
    reason: Any


class _R(msgspec.Struct, array_like=True, tag="R", forbid_unknown_fields=True, gc=False):
    words: Any
    named: Any
    block: Any
    length: Any
    data: Any
    block_list: Any


class _S(msgspec.Struct, array_like=True, tag="S", forbid_unknown_fields=True, gc=False):
    kind: Any
    section_id: Any
    name: Any
    instance_id: Any
    version_id: Any
    footer: Any
    payload: _D | _O | _R


class _C(msgspec.Struct, array_like=True, tag="C", forbid_unknown_fields=True, gc=False):
    command: Any
    data: Any
    packaged: list[_S | _C] | None


class _Tree(msgspec.Struct, gc=False):
    miglab: Any
    version: Any
    page_size: Any
    eof: Any
    ignore_shared: Any
    descs: Any
    configuration: tuple[Any, Any, msgspec.Raw] | None
    blocks: Any
    records: list[_S | _C]
    vmdesc: Any
    trailer: Any


_TREE = msgspec.msgpack.Decoder(_Tree)


def _plain_top(t: _Tree) -> dict[str, Any]:
    """The plain tree ``t`` stands for, with each device state still its bytes."""
    c = t.configuration
    return {
        "miglab": t.miglab,
        "version": t.version,
        "page_size": t.page_size,
        "eof": t.eof,
        "ignore_shared": t.ignore_shared,
        "descs": t.descs,
        "configuration": None if c is None else list(c),
        "blocks": t.blocks,
        "records": _plain_records(t.records),
        "vmdesc": t.vmdesc,
        "trailer": t.trailer,
    }


def _plain_records(records: list[_S | _C]) -> list[Any]:
    out: list[Any] = []
    for r in records:
        if type(r) is _S:
            p = r.payload
            out.append(
                [
                    "S",
                    *msgspec.structs.astuple(r)[:6],
                    [p.__struct_config__.tag, *msgspec.structs.astuple(p)],
                ]
            )
        else:
            assert type(r) is _C
            packaged = None if r.packaged is None else _plain_records(r.packaged)
            out.append(["C", r.command, r.data, packaged])
    return out


class _Malformed(Exception):
    """Malformed or too deep MessagePack inside a device state (not one of guarded()'s errors)."""


def _read_state(desc: VMStateDescription, version: int, raw: Any, path: str) -> VMState:
    """A device state from its MessagePack bytes: through its types, else as
    :func:`~miglab.encoders.tree.state_from_plain` reads its plain map."""
    try:
        if type(raw) is msgspec.Raw:
            plan = plan_of(desc, version)
            read = state_decoder(plan) if plan is not None else None
            if read is not None:
                got = read(raw)
                if got is not None:
                    return got
            raw = _DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise _Malformed from None
    return state_from_plain(desc, version, raw, path)


def _unpack(data: bytes) -> Any:
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise EncodingError(f"not valid MessagePack: {exc!s:.120}") from None


def sniff(data: bytes) -> bool:
    """True when ``data`` is a map whose first key is ``"miglab"``."""
    return len(data) > 8 and 0x80 <= data[0] <= 0x8F and bytes(data[1:8]) == b"\xa6miglab"
