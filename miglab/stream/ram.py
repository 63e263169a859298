"""The RAM section's payload: page records indexed in place, never copied.

Every RAM record starts with a be64 *page word*: an offset inside a RAM
block in the high bits and RAM_SAVE_FLAG_* in the bits below the target
page size (QEMU-FORMAT.md 2).  miglab keeps, per record, the word, whether
the block name was written, and where the record's payload sits in the
input; the payload (fill byte, page bytes, XBZRLE delta, block list...) is a
view into the input buffer, so a 1 GiB stream is indexed with a few bytes
per page.  Writing a record back is ``word, [name], payload``, byte for
byte; a page can be replaced with :meth:`RamPayload.set_payload`.

Reading needs no numpy: the record loop (:mod:`miglab.stream.ram_records`)
builds the index in :class:`array.array` columns, a run of same-kind or of
mixed zero and data records is found in C and kept as one entry
(:mod:`miglab.stream.ram_runs`), and the per-record columns are
expanded, then become numpy arrays (views, no copy), when first asked for.
Importing numpy costs more than indexing 256 MiB of RAM, so ``miglab
inspect`` and ``dump`` do without it, and loading a stream whose RAM is sent
in runs holds a few bytes per run, not per page.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from miglab.stream.ram_records import RELEASE_EVERY, RamBlock, RamContext, read_runs, release_pages
from miglab.stream.ram_runs import RecordRuns, WordBatch
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.wire import RAM_PAGE_KINDS

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

    import numpy as np

__all__ = ("RamBlock", "RamContext", "RamPayload", "read_ram", "release_chunks", "write_ram")

_BE64 = struct.Struct(">Q")
# Index entries a stream keeps (about 29 bytes each): the chunks read after
# that are re-read from the input when asked for, so memory stays flat in
# the guest's size (a 16 GiB guest of shuffled page kinds has 6M records).
_INDEX_BUDGET = 1 << 20
_READ_AROUND = 1 << 20


@dataclass(frozen=True, slots=True)
class _Reread:
    """Where to read a chunk's records again: its input offset and the reader's state there."""

    start: int
    last_block: int
    ignore_shared: bool
    records: int
    span: tuple[int, int]


class RamPayload:
    """The records of one RAM chunk (a START, PART or END section payload).

    Attributes:
        source: the input buffer the records point into.
        page_size: target page size used to split the words.
        words: the raw page words (offset | flags), one per record.
        named: True where the record carries a block name (CONTINUE clear).
        block: index into ``blocks`` of each record's block (-1 for none).
        pos: input offset of each record's payload (after word and name).
        length: payload bytes of each record.
        blocks: the stream's block list (shared by all chunks).
        block_list: the blocks listed by this chunk's MEM_SIZE record, if any.
        overrides: record index -> replacement payload bytes.

    The five index columns are numpy arrays to the caller; they may be given
    as :class:`array.array` and become arrays, without a copy, on first
    access.  The reader gives none: it keeps its run entries
    (:class:`~miglab.stream.ram_runs.RecordRuns`), expanded into the columns
    on first access, and once a stream's entries pass ``_INDEX_BUDGET`` not
    even those: such a chunk is read again from the input whenever its
    records are asked for (only the expanded columns are then kept).
    """

    __slots__ = (
        "_block",
        "_length",
        "_named",
        "_pos",
        "_reread",
        "_runs",
        "_words",
        "block_list",
        "blocks",
        "overrides",
        "page_size",
        "source",
    )

    def __init__(
        self,
        source: memoryview,
        page_size: int,
        words: Any,
        named: Any,
        block: Any,
        pos: Any,
        length: Any,
        blocks: list[RamBlock],
        block_list: list[RamBlock] | None = None,
        overrides: dict[int, bytes] | None = None,
    ) -> None:
        self.source = source
        self.page_size = page_size
        self._words, self._named, self._block = words, named, block
        self._pos, self._length = pos, length
        self.blocks = blocks
        self.block_list = block_list
        self.overrides: dict[int, bytes] = {} if overrides is None else overrides
        self._runs: RecordRuns | None = None
        self._reread: _Reread | None = None

    @classmethod
    def from_runs(
        cls,
        source: memoryview,
        page_size: int,
        runs: RecordRuns,
        blocks: list[RamBlock],
        block_list: list[RamBlock] | None = None,
    ) -> RamPayload:
        """The records of ``runs`` (as the reader indexed them), expanded when first needed."""
        out = cls(source, page_size, None, None, None, None, None, blocks, block_list)
        out._runs = runs
        return out

    def run_entries(self) -> RecordRuns | None:
        """The reader's run entries (read again if they were not kept), or None once expanded.

        Public for the readers that walk the records without expanding them (the page
        totals, verify's batches).
        """
        if self._runs is not None or self._reread is None:
            return self._runs
        again = self._reread
        ctx = RamContext(self.page_size, again.ignore_shared, list(self.blocks), again.last_block)
        return read_runs(QEMUFileReader(self.source, again.start), ctx)[0]

    def end_word(self) -> int | None:
        """The page word of the chunk's last record as the reader read it (its EOS word).

        None unless the reader's run entries are kept: then the word is read
        from the input by whoever needs it.  Reading it from the entries
        spares a big stream's checks a page fault per chunk.
        """
        runs = self._runs
        return runs.word[-1] if runs is not None and len(runs.word) else None

    def _expand(self, numpy: bool = False) -> None:
        """Turn the reader's run entries into the five per-record columns (once)."""
        runs = self.run_entries()
        if runs is not None:
            cols = runs.expand_numpy() if numpy else runs.expand()
            self._words, self._named, self._block, self._pos, self._length = cols
            self._runs = self._reread = None
            self.release()  # the words were read from the input's pages

    def __repr__(self) -> str:
        return (
            f"RamPayload({len(self)} records, page_size={self.page_size}, "
            f"block_list={self.block_list!r}, overrides={len(self.overrides)})"
        )

    def __len__(self) -> int:
        if self._runs is not None:
            if self._runs.counted:
                return self._runs.records
            n = self._runs.records
            self.release()  # counting read the pages of the words
            return n
        return self._reread.records if self._reread is not None else len(self._words)

    def _column(self, name: str, dtype: str) -> np.ndarray:
        import numpy as np

        self._expand(numpy=True)
        raw = getattr(self, "_" + name)
        if not isinstance(raw, np.ndarray) or raw.dtype != dtype:
            raw = (
                np.frombuffer(raw, dtype=dtype)
                if isinstance(raw, array)
                else np.asarray(raw, dtype)
            )
            setattr(self, "_" + name, raw)
        return raw

    @property
    def words(self) -> np.ndarray:
        """The raw page words (uint64)."""
        return self._column("words", "uint64")

    @property
    def named(self) -> np.ndarray:
        """Whether each record names its block (bool)."""
        return self._column("named", "bool")

    @property
    def block(self) -> np.ndarray:
        """Block index of each record, -1 for none (int32)."""
        return self._column("block", "int32")

    @property
    def pos(self) -> np.ndarray:
        """Input offset of each record's payload (int64)."""
        return self._column("pos", "int64")

    @property
    def length(self) -> np.ndarray:
        """Payload bytes of each record (int32)."""
        return self._column("length", "int32")

    @property
    def flags(self) -> np.ndarray:
        """RAM_SAVE_FLAG_* of every record."""
        import numpy as np

        return (self.words & np.uint64(self.page_size - 1)).astype(np.uint32)

    @property
    def offsets(self) -> np.ndarray:
        """Offset inside its block of every record's page."""
        import numpy as np

        return self.words & ~np.uint64(self.page_size - 1)

    def add_to(self, batch: WordBatch) -> None:
        """Append these records to ``batch`` (page words and wire bytes of many chunks).

        A chunk in runs stays in runs (nothing is kept here); its input stays
        mapped until the caller releases it (:func:`release_chunks`, one call
        for many chunks).
        """
        runs = self.run_entries()
        if runs is not None:
            batch.add(runs)
        else:
            batch.add_records(self.words, self.named, self.block, self.length)

    def span(self) -> tuple[int, int]:
        """Input offsets of the first payload and of the end of the last record (0, 0: none)."""
        if self._runs is not None:  # its span, without counting a mixed run
            return self._runs.span()
        if self._reread is not None:
            return self._reread.span
        if not len(self._words):
            return 0, 0
        last = len(self._words) - 1
        return int(self._pos[0]), int(self._pos[last]) + int(self._length[last])

    def release(self) -> None:
        """Drop the input pages of these records from this process's resident set.

        A hint for one pass over a memory-mapped file (writing a stream out,
        extracting its pages): the pages stay in the page cache and every
        view stays valid (it reads them back on use), but they no longer
        count towards the RSS, which would otherwise grow to the file's size.
        """
        mapping = self.source.obj
        if not isinstance(mapping, mmap.mmap) or len(mapping) != len(self.source):
            return
        _release_span(mapping, *self.span())

    def records(self) -> Iterator[tuple[int, int, int]]:
        """``(word, block index, payload offset)`` of every record, as ints, without numpy."""
        runs = self.run_entries()
        if runs is not None:
            return self._released_after((w, b, at) for w, b, at, _ in runs.iter_records())
        cols = [
            c if isinstance(c, array) else c.tolist() for c in (self._words, self._block, self._pos)
        ]
        return zip(*cols, strict=True)

    def page_records(self) -> Iterator[tuple[int, int, int, memoryview | bytes]]:
        """``(block index, page word, payload offset, payload)`` of every page record.

        Without expanding the per-record columns (unless the chunk is edited),
        so one pass over a big stream (``miglab extract``) holds a run at a
        time, not a few integers per page of the guest.
        """
        kinds = RAM_PAGE_KINDS & (self.page_size - 1)
        runs = None if self.overrides else self.run_entries()
        if runs is None:
            self._expand()
            for i, (word, block) in enumerate(zip(self._words, self._block, strict=True)):
                if int(word) & kinds:
                    yield int(block), int(word), int(self._pos[i]), self.payload(i)
            return
        src = self.source
        for word, block, at, size in runs.iter_records():
            if word & kinds:
                yield block, word, at, src[at : at + size]
        self.release()

    def page_words(self) -> Iterator[tuple[int, array]]:
        """``(block index, page words)`` of the page records, a run at a time, without numpy.

        The cheap way to see which pages a chunk sends (``miglab verify``):
        a run's words come as one ``array('Q')``; nothing is kept.
        """
        runs = self.run_entries()
        if runs is not None:
            yield from runs.page_words()
        else:
            self._expand()
            kinds = RAM_PAGE_KINDS & (self.page_size - 1)
            for word, block in zip(self._words, self._block, strict=True):
                if int(word) & kinds:
                    yield int(block), array("Q", (int(word),))
        self.release()

    def _released_after(
        self, records: Iterator[tuple[int, int, int]]
    ) -> Iterator[tuple[int, int, int]]:
        """``records``, then the input pages their words were read from dropped from the RSS."""
        yield from records
        self.release()

    def payload(self, i: int) -> memoryview | bytes:
        """Record ``i``'s payload: a view into the input, or its replacement."""
        if i in self.overrides:
            return self.overrides[i]
        self._expand()
        start = int(self._pos[i])
        return self.source[start : start + int(self._length[i])]

    def set_payload(self, i: int, data: bytes) -> None:
        """Replace record ``i``'s payload (same length: a page stays a page)."""
        self._expand()
        if len(data) != int(self._length[i]):
            raise ValueError(
                f"record {i} has {int(self._length[i])} payload bytes, got {len(data)}"
            )
        self.overrides[i] = bytes(data)

    def pages(self) -> Iterator[tuple[str, int, int, memoryview | bytes]]:
        """Yield ``(block name, offset, flags, payload)`` for every page record."""
        mask = self.page_size - 1
        for b, word, _, data in self.page_records():
            yield self.blocks[b].name if b >= 0 else "", word & ~mask, word & mask, data


def _release_span(mapping: mmap.mmap, first: int, upto: int) -> None:
    if upto <= first:
        return
    # A page fault on a mapped file maps the cached pages around it too
    # (read-around, fault-around), so reading this chunk also mapped the
    # tail of the chunk before; 1 MiB covers it (measured: RSS stays flat).
    start = max(0, first - first % mmap.PAGESIZE - _READ_AROUND)
    release_pages(mapping, start, upto)


def release_chunks(chunks: Sequence[RamPayload]) -> None:
    """:meth:`RamPayload.release` for chunks in input order, with one ``madvise``.

    The chunks of one input follow each other, so the pages from the first
    one's start to the last one's end are dropped at once (what lies between,
    device sections, are views too: read back on use).
    """
    if not chunks:
        return
    mapping = chunks[0].source.obj
    if not isinstance(mapping, mmap.mmap) or len(mapping) != len(chunks[0].source):
        return
    spans = [s for s in (c.span() for c in chunks if c.source.obj is mapping) if s[1] > s[0]]
    if spans:
        _release_span(mapping, spans[0][0], spans[-1][1])


def read_ram(r: QEMUFileReader, ctx: RamContext) -> RamPayload:
    """Read RAM records up to and including EOS (ram_load_precopy's loop)."""
    chunk_at, first_block = r.pos, ctx.last_block
    runs, block_list = read_runs(r, ctx)
    out = RamPayload.from_runs(r.view, ctx.page_size, runs, ctx.blocks, block_list)
    ctx.indexed += len(runs.count)
    if ctx.indexed > _INDEX_BUDGET:
        out._runs = None
        out._reread = _Reread(chunk_at, first_block, ctx.ignore_shared, runs.records, runs.span())
        out.release()  # counting the records read the pages of their words
    return out


def write_ram(w: QEMUFileWriter, payload: RamPayload) -> None:
    """Write the records back: word, block name if it was written, payload."""
    runs = None if payload.overrides else payload.run_entries()
    if runs is not None:
        _write_runs(w, payload, runs)
        payload.release()
        return
    payload._expand()
    words = payload._words.tolist()
    named = payload._named.tolist()
    block = payload._block.tolist()
    pos = payload._pos.tolist()
    length = payload._length.tolist()
    src = payload.source
    overrides = payload.overrides
    blocks = payload.blocks
    pack = _BE64.pack
    for i, word in enumerate(words):
        w.write(pack(word))
        if named[i]:
            w.counted_string(blocks[block[i]].name.encode("utf-8", "surrogateescape"))
        if i in overrides:
            w.write(overrides[i])
        elif length[i]:
            w.write(src[pos[i] : pos[i] + length[i]])
    payload.release()


def _write_runs(w: QEMUFileWriter, payload: RamPayload, runs: RecordRuns) -> None:
    """Write an unedited chunk as the spans of input between block names.

    The records were read back to back, so everything but a block name (which
    comes from ``payload.blocks``, as in the per-record path) is copied from
    the input, at most one release interval at a time.
    """
    src = payload.source
    names = [b.name.encode("utf-8", "surrogateescape") for b in payload.blocks]
    copied = runs.word_at(0) if len(runs.count) else 0
    for i, word_at in sorted(runs.name_at.items()):
        _copy(w, src, copied, word_at + 8)
        w.counted_string(names[runs.block[i]])
        copied = runs.pos[i]
    _copy(w, src, copied, runs.span()[1])


def _copy(w: QEMUFileWriter, src: memoryview, start: int, stop: int) -> None:
    for at in range(start, stop, RELEASE_EVERY):
        w.write(src[at : min(stop, at + RELEASE_EVERY)])
