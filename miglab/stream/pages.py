"""The final content of every RAM page, over all the passes of a stream.

A live precopy stream sends RAM in many chunks (``SECTION_PART ram``) and sends
a page again each time the guest dirtied it after it was sent: the destination
keeps the *last* copy, and an XBZRLE record is a delta over the copy before it
(``migration/ram.c``: ``ram_load_precopy``, ``load_xbzrle``).  The stream's
records stay as they are (every one is written back, byte for byte);
:class:`RamPages` indexes them by page, so a view of RAM shows what the
destination would hold::

    pages = RamPages(miglab.load("live.mig"))
    pages.resent                     # records that re-sent a page already sent
    pages.page("pc.ram", 0x200)      # the final 4 KiB of page 0x200
    pages.block_bytes("pc.ram")      # the whole block as the destination holds it
    pages.frame()                    # a row per block: pages, sends, final kinds

A page no record sent reads as zeros (QEMU's RAM starts zeroed); a delta on
such a page applies over zeros, as QEMU applies it over fresh memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from miglab.errors import MigrationFormatError, NotFoundError
from miglab.stream.model import Stream
from miglab.stream.ram import RamPayload, release_chunks
from miglab.stream.ram_records import RELEASE_EVERY
from miglab.stream.ram_runs import WordBatch
from miglab.stream.xbzrle import xbzrle_decode
from miglab.wire import (
    RAM_COMPRESS_PAGE,
    RAM_CONTINUE,
    RAM_PAGE,
    RAM_PAGE_KINDS,
    RAM_XBZRLE,
    RAM_ZERO,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ("RamPages", "block_totals")

_COUNT_COLUMNS = ("block", "pages", "records", "resent", "max_sends", "xbzrle", "final_zero_pages")
_BATCH = 1 << 20  # page words settled at once by block_totals (about 12 bytes each)
_KIND_NAMES = {
    RAM_ZERO: "zero",
    RAM_PAGE: "page",
    RAM_XBZRLE: "xbzrle",
    RAM_COMPRESS_PAGE: "compressed",
}


class RamPages:
    """Which record gives each RAM page its final content.

    Built from the RAM chunks of a loaded stream, in stream order; the index
    holds a few integers per page record and no page data.

    Attributes:
        stream: the stream indexed.
        records: page records in the stream (all passes).
        pages: distinct pages sent.
        resent: records that sent a page again (``records - pages``).
        xbzrle: XBZRLE records.
    """

    def __init__(self, stream: Stream) -> None:
        import numpy as np

        self.stream = stream
        self.page_size = stream.page_size
        blocks = stream.ram.blocks
        self._names = {b.name: i for i, b in enumerate(blocks)}
        counts = np.array([-(-b.used_length // self.page_size) for b in blocks], dtype=np.int64)
        self._base = np.concatenate([[0], np.cumsum(counts)])
        self._chunks: list[RamPayload] = []
        parts: list[tuple[np.ndarray, ...]] = []
        for s in stream.sections:
            p = s.payload
            if not isinstance(p, RamPayload):
                continue
            kind = (p.words & np.uint64(self.page_size - 1)).astype(np.int64) & ~RAM_CONTINUE
            idx = np.nonzero((kind & RAM_PAGE_KINDS) != 0)[0]
            block = p.block[idx].astype(np.int64)
            page = (p.offsets[idx] // np.uint64(self.page_size)).astype(np.int64)
            inside = (block >= 0) & (page < counts[np.maximum(block, 0)])
            idx, block, page = idx[inside], block[inside], page[inside]
            chunk = np.full(len(idx), len(self._chunks), dtype=np.int64)
            parts.append((self._base[block] + page, kind[idx], chunk, idx))
            self._chunks.append(p)
        empty: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * 4
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)] if parts else empty
        self._key, self._kind, self._chunk, self._rec = cols
        total = int(self._base[-1])
        self._sends = np.bincount(self._key, minlength=total)
        # The last record of each page: first occurrence in the reversed order.
        last = np.full(total, -1, dtype=np.int64)
        rev = self._key[::-1]
        uniq, first = np.unique(rev, return_index=True)
        last[uniq] = len(self._key) - 1 - first
        self._last = last
        self.records = len(self._key)
        self.pages = len(uniq)
        self.resent = self.records - self.pages
        self.xbzrle = int(np.count_nonzero(self._kind == RAM_XBZRLE))

    # --- per page -------------------------------------------------------------
    def _block(self, name: str) -> int:
        try:
            return self._names[name]
        except KeyError:
            raise NotFoundError(f"no RAM block {name!r}") from None

    def sends(self, block: str) -> np.ndarray:
        """How many records sent each page of ``block`` (0 = never sent)."""

        b = self._block(block)
        return self._sends[self._base[b] : self._base[b + 1]]

    def final_kinds(self, block: str) -> list[str | None]:
        """The kind of each page's last record (``page``, ``zero``, ``xbzrle``...) or None."""
        b = self._block(block)
        last = self._last[self._base[b] : self._base[b + 1]]
        return [_KIND_NAMES[int(self._kind[i])] if i >= 0 else None for i in last]

    def page(self, block: str, index: int) -> bytes:
        """The final content of page ``index`` of ``block`` (last copy wins).

        Raises:
            NotFoundError: no block ``block`` (a ``KeyError``).
            IndexError: ``index`` is outside the block, as a list would say.
        """
        import numpy as np

        b = self._block(block)
        if not 0 <= index < self._base[b + 1] - self._base[b]:
            raise IndexError(f"page {index} is outside block {block!r}")
        where = np.nonzero(self._key == self._base[b] + index)[0]
        buf = bytearray(self.page_size)
        for j in self._replay(where):
            self._apply(buf, j)
        return bytes(buf)

    def _replay(self, where: np.ndarray) -> Iterator[int]:
        """The records that make a page's final content: the last full copy and the deltas after it."""

        full = [j for j in where.tolist() if self._kind[j] != RAM_XBZRLE]
        start = full[-1] if full else -1
        return (j for j in where.tolist() if j >= start)

    def _apply(self, buf: bytearray | memoryview, j: int) -> None:
        p = self._chunks[int(self._chunk[j])]
        i = int(self._rec[j])
        kind = int(self._kind[j])
        data = p.payload(i)
        at = int(p.pos[i])
        if kind == RAM_PAGE:
            buf[:] = data
        elif kind == RAM_ZERO:
            buf[:] = bytes([data[0]]) * self.page_size
        elif kind == RAM_XBZRLE:
            page = buf if isinstance(buf, bytearray) else bytearray(buf)
            xbzrle_decode(page, data[3:], at + 3)
            buf[:] = page
        else:  # COMPRESS_PAGE: be32 length, zlib data (QEMU <= 9.0)
            inflate = zlib.decompressobj()
            try:
                raw = inflate.decompress(bytes(data[4:]), self.page_size)
            except zlib.error as exc:
                raise MigrationFormatError(f"compressed page: {exc}", offset=at + 4) from None
            buf[:] = raw.ljust(self.page_size, b"\0")

    # --- whole blocks --------------------------------------------------------
    def block_bytes(self, block: str) -> bytearray:
        """The whole block as the destination holds it after the stream.

        Records are applied in stream order, so every copy of a page
        replaces the one before and each delta applies to its predecessor.
        """
        import numpy as np

        b = self._block(block)
        size = self.stream.ram.blocks[b].used_length
        out = bytearray(int(self._base[b + 1] - self._base[b]) * self.page_size)
        view = memoryview(out)
        ps = self.page_size
        base = int(self._base[b])
        for j in np.nonzero((self._key >= base) & (self._key < self._base[b + 1]))[0].tolist():
            n = int(self._key[j]) - base
            self._apply(view[n * ps : (n + 1) * ps], j)
        del view
        del out[size:]
        return out

    def block_counts(self) -> dict[str, list[Any]]:
        """The columns of :meth:`frame` (column -> one value per block, in block order)."""
        import numpy as np

        cols: dict[str, list[Any]] = {name: [] for name in _COUNT_COLUMNS}
        for b, blk in enumerate(self.stream.ram.blocks):
            lo, hi = self._base[b], self._base[b + 1]
            sends = self._sends[lo:hi]
            last = self._last[lo:hi]
            sel = (self._key >= lo) & (self._key < hi)
            final = self._kind[last[last >= 0]]
            sent = int(np.count_nonzero(sends))
            records = int(sends.sum())
            cols["block"].append(blk.name)
            cols["pages"].append(sent)
            cols["records"].append(records)
            cols["resent"].append(records - sent)
            cols["max_sends"].append(int(sends.max()) if len(sends) else 0)
            cols["xbzrle"].append(int(np.count_nonzero(self._kind[sel] == RAM_XBZRLE)))
            cols["final_zero_pages"].append(int(np.count_nonzero(final == RAM_ZERO)))
        return cols

    def frame(self) -> pd.DataFrame:
        """A row per block: pages sent, records, re-sends, XBZRLE records, final zero pages."""
        import pandas as pd

        if not self.stream.ram.blocks:
            return pd.DataFrame([])
        return pd.DataFrame(self.block_counts())


def block_totals(stream: Stream) -> dict[str, np.ndarray]:
    """Per RAM block: ``pages`` sent, ``final_zero_pages``, ``bytes`` on the wire (int64 arrays).

    The page counts of :meth:`RamPages.block_counts` (a page counts once, as
    what its last record made it) without its per-record index: one pass
    over the chunks, whose page words are settled a batch at a time (at
    most 1M records or 16 MiB of input) into a byte per guest page (never
    sent, data, zero), so memory stays flat in the number of records, and
    the input pages a batch read are released with one call.  ``bytes``
    counts every record of the block, all passes.
    """
    import numpy as np

    blocks = stream.ram.blocks
    ps = stream.page_size
    counts = np.array([-(-b.used_length // ps) for b in blocks], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    name_len = np.array(
        [len(b.name.encode("utf-8", "surrogateescape")) + 1 for b in blocks], dtype=np.int64
    )
    settle = _Settle(ps, counts, base)
    wire = np.zeros(len(blocks), dtype=np.int64)
    batch = WordBatch(name_len)
    chunks: list[RamPayload] = []
    for s in stream.sections:
        p = s.payload
        if not isinstance(p, RamPayload):
            continue
        p.add_to(batch)
        chunks.append(p)
        if batch.records >= _BATCH or p.span()[1] - chunks[0].span()[0] >= RELEASE_EVERY:
            wire += settle(batch, chunks)
            chunks = []
    wire += settle(batch, chunks)
    state = settle.state
    ranges = list(pairwise(base.tolist()))
    pages = [np.count_nonzero(state[lo:hi]) for lo, hi in ranges]
    zeros = [np.count_nonzero(state[lo:hi] == _FINAL_ZERO) for lo, hi in ranges]
    return {
        "pages": np.array(pages, dtype=np.int64),
        "final_zero_pages": np.array(zeros, dtype=np.int64),
        "bytes": wire,
    }


_FINAL_DATA, _FINAL_ZERO = 1, 2


class _Settle:
    """The final state of every guest page (0 never sent, 1 data, 2 zero), a batch at a time."""

    def __init__(self, page_size: int, counts: np.ndarray, base: np.ndarray) -> None:
        import numpy as np

        self.page_size, self.counts, self.base = page_size, counts, base
        self.state = np.zeros(int(base[-1]), dtype=np.uint8)
        # Scratch: which record of a batch wrote a page last (finds pages sent twice).
        self._stamp = np.zeros(int(base[-1]), dtype=np.int32)

    def __call__(self, batch: WordBatch, chunks: list[RamPayload]) -> np.ndarray:
        """Settle the records of ``batch`` (read from ``chunks``); their wire bytes per block."""
        import numpy as np

        words, block32, wire = batch.take()
        release_chunks(chunks)
        block = block32.astype(np.int64)
        kind = (words & np.uint64(self.page_size - 1)).astype(np.int64) & ~RAM_CONTINUE
        page = (words // np.uint64(self.page_size)).astype(np.int64)
        sel = ((kind & RAM_PAGE_KINDS) != 0) & (block >= 0)
        sel &= page < self.counts[np.maximum(block, 0)]
        keys = self.base[block[sel]] + page[sel]
        code = np.where(kind[sel] == RAM_ZERO, _FINAL_ZERO, _FINAL_DATA).astype(np.uint8)
        # An assignment with repeated indices keeps one of their values, which
        # one numpy does not promise: pages sent more than once in the batch
        # are found (the records that lost) and settled by their last record.
        order = np.arange(len(keys), dtype=np.int32)
        stamp = self._stamp
        stamp[keys] = order
        lost = stamp[keys] != order
        if not lost.any():
            self.state[keys] = code
            return wire
        stamp[keys[lost]] = -1
        again = stamp[keys] == -1
        self.state[keys[~again]] = code[~again]
        rev_keys, rev_code = keys[again][::-1], code[again][::-1]
        uniq, first = np.unique(rev_keys, return_index=True)
        self.state[uniq] = rev_code[first]
        return wire
