"""RAM chunks as the ``Ram`` value of the ASN.1 module: runs of page records and their payloads.

A RAM chunk is mostly records at consecutive page offsets with the same
flags and block (a stretch of zero pages, of whole pages), so it travels as
*runs*: the first offset as a skip from where the run before ended, a
count, and the flags, block and payload size only where they change
(``Run`` in :mod:`miglab.encoders.asn1_module`).  The payloads follow in one
``OCTET STRING``; a run of equal payloads of at most 8 bytes (a zero page's
fill byte) carries its payload once.  So a run of zero pages costs a few
bytes, where QEMU's stream spends nine per page.

Rebuilding a chunk checks what :mod:`miglab.encoders.tree` checks (lengths,
block indexes, names only on pages of a block), and charges every record to
the decode's element budget (:func:`miglab.limits.charge_elements`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miglab.encoders.asn1_types import name_value
from miglab.encoders.plain_items import read_bool, read_bytes, read_int, read_text
from miglab.errors import EncodingError
from miglab.limits import charge_elements
from miglab.stream.ram import RamBlock, RamContext, RamPayload

__all__ = ("block_values", "blocks_of", "ram_of", "ram_value")

_MAX_REPEATED = 8  # bytes: a repeated payload is a fill byte, never a page
_U64 = (1 << 64) - 1


def block_values(blocks: list[RamBlock]) -> list[dict[str, Any]]:
    """The ``Block`` values of a block list."""
    out = []
    for b in blocks:
        v: dict[str, Any] = {"name": name_value(b.name), "used-length": b.used_length}
        if b.addr is not None:
            v["addr"] = b.addr
        out.append(v)
    return out


def blocks_of(values: list[Any]) -> list[RamBlock]:
    """The block list of decoded ``Block`` values."""
    return [
        RamBlock(
            read_text(v["name"][1], "block name"),
            read_int(v["used-length"], "used_length"),
            v.get("addr"),
        )
        for v in values
    ]


def _payload_bytes(p: RamPayload) -> bytes:
    n = len(p.words)
    if p.overrides:
        return b"".join(bytes(p.payload(i)) for i in range(n))
    src, pos, length = p.source, p.pos.tolist(), p.length.tolist()
    return b"".join([src[pos[i] : pos[i] + length[i]] for i in range(n)])


def ram_value(p: RamPayload) -> dict[str, Any]:
    """The ``Ram`` value of one chunk."""
    words = p.words.astype(np.uint64)
    n = len(words)
    bits = p.page_size.bit_length() - 1
    hi = (words >> np.uint64(bits)).tolist()
    lo = (words & np.uint64(p.page_size - 1)).tolist()
    named, block, length = p.named.tolist(), p.block.tolist(), p.length.tolist()
    data = _payload_bytes(p)
    # A record starts a new run unless it is the next page of the one before,
    # with the same flags and block, and carries no name.
    if n:
        w = words
        cont = np.zeros(n, dtype=bool)
        cont[1:] = (
            (w[1:] - w[:-1] == np.uint64(p.page_size))
            & ~p.named[1:]
            & (p.block[1:] == p.block[:-1])
        )
        starts = np.flatnonzero(~cont).tolist()
    else:
        starts = []
    starts.append(n)
    runs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    at = 0  # into data
    end, flags, blk, size = 0, 0, -1, 0  # "as in the run before"
    for r in range(len(starts) - 1):
        a, b = starts[r], starts[r + 1]
        count = b - a
        run: dict[str, Any] = {"skip": hi[a] - end}
        if count > 1:
            run["count"] = count
        if lo[a] != flags:
            run["flags"] = flags = lo[a]
        if named[a]:
            run["named"] = True
        if block[a] != blk:
            run["block"] = blk = block[a]
        sizes = length[a:b]
        total = sum(sizes)
        if min(sizes) == max(sizes):
            if sizes[0] != size:
                run["size"] = size = sizes[0]
            one = data[at : at + size]
            if count > 1 and size <= _MAX_REPEATED and data[at : at + total] == one * count:
                run["repeated"] = True
                chunks.append(one)
            else:
                chunks.append(data[at : at + total])
        else:
            run["sizes"] = sizes
            chunks.append(data[at : at + total])
        at += total
        end = hi[b - 1] + 1
        runs.append(run)
    out: dict[str, Any] = {"runs": runs, "data": b"".join(chunks)}
    if p.block_list is not None:
        out["block-list"] = block_values(p.block_list)
    return out


def ram_of(v: dict[str, Any], ctx: RamContext, name: str) -> RamPayload:
    """The RAM chunk a decoded ``Ram`` value holds, checked.

    Raises:
        EncodingError: offsets, sizes, blocks or names that do not fit together.
        LimitExceeded: more records than the input's element budget.
    """
    data = read_bytes(v["data"], name)
    nblocks = len(ctx.blocks)
    bits = ctx.page_size.bit_length() - 1
    hi_max = _U64 >> bits
    words: list[np.ndarray] = []
    named: list[bool] = []
    block: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    chunks: list[bytes] = []
    end, flags, blk, size, at = 0, 0, -1, 0, 0
    for run in v["runs"]:
        count = run.get("count", 1)
        charge_elements(count, path=name)
        first = end + run["skip"]
        if first < 0 or first + count - 1 > hi_max:
            raise EncodingError(f"RAM page offset {first} out of range", path=name)
        flags = read_int(run.get("flags", flags), f"{name} flags", 0, ctx.page_size - 1)
        blk = read_int(run.get("block", blk), f"{name} block", -1, nblocks - 1)
        is_named = read_bool(run.get("named", False), f"{name} named")
        if is_named and blk < 0:
            raise EncodingError("a RAM record names a block it does not have", path=name)
        if "sizes" in run:
            sizes = np.asarray(
                [read_int(s, f"{name} size", 0, 0x7FFFFFFF) for s in run["sizes"]], np.int32
            )
            if len(sizes) != count or run.get("repeated") or "size" in run:
                raise EncodingError("RAM run sizes do not match its count", path=name)
            total = int(sizes.sum(dtype=np.int64))
            chunk = data[at : at + total]
        else:
            size = read_int(run.get("size", size), f"{name} size", 0, 0x7FFFFFFF)
            sizes = np.full(count, size, np.int32)
            if run.get("repeated"):
                if size > _MAX_REPEATED:
                    raise EncodingError(f"a repeated RAM payload of {size} bytes", path=name)
                chunk = data[at : at + size] * count
                total = size
            else:
                total = size * count
                chunk = data[at : at + total]
        if at + total > len(data):
            raise EncodingError("RAM payload bytes are cut off", path=name)
        at += total
        chunks.append(chunk)
        his = np.arange(first, first + count, dtype=np.uint64)
        words.append((his << np.uint64(bits)) | np.uint64(flags))
        named.append(is_named)  # of the run's first record; the others carry none
        block.append(np.full(count, blk, np.int32))
        lengths.append(sizes)
        end = first + count
    if at != len(data):
        raise EncodingError("RAM payload bytes without records", path=name)
    payload = b"".join(chunks)
    n = sum(len(w) for w in words)
    w = np.concatenate(words) if words else np.zeros(0, np.uint64)
    length = np.concatenate(lengths) if lengths else np.zeros(0, np.int32)
    named_col = np.zeros(n, dtype=bool)
    i = 0
    for wr, first_named in zip(words, named, strict=True):
        named_col[i] = first_named
        i += len(wr)
    pos = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(length[:-1], out=pos[1:])
    block_list = blocks_of(v["block-list"]) if "block-list" in v else None
    return RamPayload(
        source=memoryview(payload),
        page_size=ctx.page_size,
        words=w,
        named=named_col,
        block=np.concatenate(block) if block else np.zeros(0, np.int32),
        pos=pos,
        length=length,
        blocks=ctx.blocks,
        block_list=block_list,
    )
