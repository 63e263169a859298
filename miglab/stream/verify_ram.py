"""Verify's RAM checks: the block list, every page sent, none beyond its block.

Precopy sends every page of every block at least once (``ram_save_setup``
then the dirty bitmap's passes), each inside its block.  One byte per page
marks what was sent, from the page words of the chunks' records, a batch of
chunks (:data:`_BATCH_BYTES` of stream) at a time.  A batch whose mixed runs
of zero and data records are big enough to pay for numpy's import is read
with it, every run of the batch walked side by side
(:mod:`miglab.stream.verify_walk`); otherwise in plain Python, from the
words of a run at a time (:meth:`~miglab.stream.ram_runs.RecordRuns.page_words`).
A chunk that sends a page beyond its block is then read record by record,
to report where.  The batch's input pages are dropped from the resident set
in one call after it.  A block may *declare* any size; marks beyond what the
input could fill are kept sparse, never allocated by the declared size.

``verify`` marks the pages in the reader's own pass (:class:`SentPages`, the
reader's :attr:`~miglab.stream.ram_records.RamContext.on_chunk`): each batch
right after the reader read it, while its pages are mapped and its words in
the CPU's caches, so a big stream is not faulted in and walked from memory a
second time.  :func:`check_ram` takes those marks where they are the ones its
own pass over the loaded stream would make, and else makes them itself.
"""

from __future__ import annotations

import mmap
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING

from miglab.findings import ERROR, Finding
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.ram_records import RamBlock, RamContext, release_pages
from miglab.stream.ram_runs import RecordRuns
from miglab.wire import RAM_PAGE_KINDS

if TYPE_CHECKING:
    from array import array

    import numpy as np
    from numpy.typing import NDArray

    from miglab.stream.progress import Progress

__all__ = ("SentPages", "check_ram")


_BATCH_BYTES = 16 << 20  # stream bytes of the chunks checked (and released) together
_NUMPY_FROM = 4 << 20  # bytes of mixed runs in a batch from which numpy pays for its import
_READ_AROUND = 1 << 20  # what reading a chunk maps of the pages before it


class SentPages:
    """The pages a stream's RAM chunks send, marked while the reader reads them.

    Called by the reader with each chunk's run entries (``load(...,
    on_ram_chunk=SentPages(size))``); every :data:`_BATCH_BYTES` of stream
    the batch's pages are marked and its input pages dropped from the
    resident set (the reader leaves that to this hook).  The marks are for
    the block list the first batch saw; a chunk that lists the blocks again
    differently, a chunk nested in a command (not one of the stream's
    sections) or no block list at all make them unusable, and
    :func:`check_ram` then marks the pages itself, as it would have without.

    Attributes:
        spans: every chunk's span (:meth:`RecordRuns.span`), in reading order.
        beyond: indexes into ``spans`` of the chunks with a page beyond its block.
        blocks: the block list the marks are for (None before the first batch).
        sent, npages: per block, the marks and their length.
        usable: False once the marks cannot be what check_ram's own pass makes.
    """

    def __init__(self, source_size: int) -> None:
        """``source_size``: the input's length (what bounds the dense marks)."""
        self.room = max(source_size, 1 << 24)
        self.spans: list[tuple[int, int]] = []
        self.beyond: list[int] = []
        self.blocks: list[RamBlock] | None = None
        self.sent: list[bytearray | _SparseMarks] = []
        self.npages: list[int] = []
        self.usable = True
        self._batch: list[RecordRuns] = []
        self._batch_start = 0  # input offset of the batch's first chunk
        self._released = -1  # input offset up to which this hook dropped pages

    def __call__(self, runs: RecordRuns, ctx: RamContext) -> None:
        span = runs.span()
        self.spans.append(span)
        if not self._batch:
            self._batch_start = span[0]
        self._batch.append(runs)
        if span[1] - self._batch_start >= _BATCH_BYTES:
            self.finish(ctx)

    def finish(self, ctx: RamContext | None) -> None:
        """Mark the chunks read since the last batch (None: the stream did not load)."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        if ctx is None or not ctx.blocks:
            self.usable = False
        elif self.blocks is None:
            self.blocks = list(ctx.blocks)
            self.sent = [
                _marks(max(b.used_length // ctx.page_size, 0), self.room) for b in ctx.blocks
            ]
            self.npages = [len(marks) for marks in self.sent]
        elif ctx.blocks != self.blocks:
            self.usable = False
        if self.usable:
            shift = batch[0].page_size.bit_length() - 1
            first = len(self.spans) - len(batch)
            self.beyond += [first + k for k in _mark_runs(batch, self.sent, self.npages, shift)]
        source = batch[0].source
        mapping = source.obj
        if isinstance(mapping, mmap.mmap) and len(mapping) == len(source):
            start = self._released if self._released >= 0 else self._batch_start
            start = max(0, start - start % mmap.PAGESIZE - _READ_AROUND)
            self._released = release_pages(mapping, start, batch[-1].span()[1])

    def marks_for(
        self, ctx: RamContext, chunks: list[Section]
    ) -> list[bytearray | _SparseMarks] | None:
        """The marks, if they are those of ``chunks`` (the stream's) for ``ctx``'s blocks."""
        self.finish(ctx)
        if not self.usable or self.blocks != ctx.blocks:
            return None
        if self.spans != [_payload(s).span() for s in chunks]:
            return None
        return self.sent


def check_ram(
    stream: Stream, progress: Progress | None = None, marked: SentPages | None = None
) -> Iterator[Finding]:
    """Findings about the RAM blocks and the pages the stream sends of them.

    ``progress`` is told ``("checking", offset, size)`` a batch of chunks at
    a time; ``marked``: the pages marked while the stream was read, used
    where they are those of this stream's chunks and blocks.
    """
    ctx = stream.ram
    page = stream.page_size
    names: dict[str, int] = {}
    for b in ctx.blocks:
        if b.name in names:
            yield Finding(ERROR, "ram-block-duplicate", f"RAM block {b.name!r} listed twice")
        names[b.name] = 1
        if b.used_length % page:
            yield Finding(
                ERROR,
                "ram-block-length",
                f"RAM block {b.name!r} is {b.used_length} bytes, not a multiple of the "
                f"{page}-byte page",
            )
    chunks = [s for s in stream.sections if isinstance(s.payload, RamPayload)]
    sent = marked.marks_for(ctx, chunks) if marked is not None else None
    if not chunks or not ctx.blocks:
        return
    if sent is not None and marked is not None:
        npages = marked.npages
        for k in marked.beyond:
            yield from _beyond_block(chunks[k], sent, npages, ctx.blocks)
    else:
        sent, npages = yield from _check_pages(stream, chunks, progress)
    if stream.eof and any(s.kind is SectionKind.END for s in chunks) and not ctx.ignore_shared:
        for b, marks in zip(ctx.blocks, sent, strict=True):
            missing = len(marks) - marks.count(1)
            if missing:
                first = marks.find(0)
                yield Finding(
                    ERROR,
                    "page-never-sent",
                    f"{missing} page(s) of RAM block {b.name!r} are never sent "
                    f"(first at block offset 0x{first * page:x}); precopy sends every page",
                )


def _check_pages(
    stream: Stream, chunks: list[Section], progress: Progress | None
) -> Generator[Finding, None, tuple[list[bytearray | _SparseMarks], list[int]]]:
    """Mark the pages ``chunks`` send, a batch at a time, and report those beyond their
    block; returns the marks and their lengths."""
    ctx = stream.ram
    page = stream.page_size
    # A block may *declare* any size: marks beyond what the input could fill
    # (each sent page costs at least 9 bytes) are kept sparse, not allocated.
    room = max(stream.source_size, 1 << 24)
    sent = [_marks(max(b.used_length // page, 0), room) for b in ctx.blocks]
    npages = [len(marks) for marks in sent]
    shift = page.bit_length() - 1
    source = _payload(chunks[0]).source
    mapping = source.obj if isinstance(source.obj, mmap.mmap) else None
    released = chunks[0].offset
    for batch in _batches(chunks):
        last = batch[-1]
        if progress is not None:
            progress("checking", last.offset + last.size, stream.source_size)
        entries = [
            r if (r := _payload(s).run_entries()) is not None else _payload(s) for s in batch
        ]
        for k in _mark_runs(entries, sent, npages, shift):
            yield from _beyond_block(batch[k], sent, npages, ctx.blocks)
        if mapping is not None and len(mapping) == len(source):
            # one call for the batch; the 1 MiB before covers what reading its
            # first chunk mapped of the pages before it (fault-around)
            start = max(0, released - released % mmap.PAGESIZE - _READ_AROUND)
            released = release_pages(mapping, start, last.offset + last.size)
    return sent, npages


def _payload(s: Section) -> RamPayload:
    p = s.payload
    assert isinstance(p, RamPayload)
    return p


def _batches(chunks: list[Section]) -> Iterator[list[Section]]:
    """Consecutive chunks spanning up to :data:`_BATCH_BYTES` of stream (at least one)."""
    batch: list[Section] = []
    for s in chunks:
        if batch and s.offset + s.size - batch[0].offset > _BATCH_BYTES:
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


def _mark_runs(
    entries: Sequence[RecordRuns | RamPayload],
    sent: list[bytearray | _SparseMarks],
    npages: list[int],
    shift: int,
) -> list[int]:
    """Mark the pages a batch of chunks sends: from their run entries, or from the chunk
    where it has none; the indexes of the chunks with a page beyond its block."""
    mixed = sum(
        stop - r.word_at(i)
        for r in entries
        if isinstance(r, RecordRuns)
        for i, stop in r.mixed.items()
    )
    if mixed < _NUMPY_FROM:
        return [
            k for k, r in enumerate(entries) if not _mark_sent(r.page_words(), sent, npages, shift)
        ]
    from miglab.stream.verify_walk import PageWords

    words = PageWords(entries[0].source, entries[0].page_size)
    beyond = []
    for k, r in enumerate(entries):
        if isinstance(r, RecordRuns):
            words.add(r, k, len(sent))
        elif not _mark_sent(r.page_words(), sent, npages, shift):
            beyond.append(k)
    beyond += _mark_words(*words.read(), sent, npages, shift)
    return sorted(set(beyond))


def _mark_words(
    words: NDArray[np.uint64],
    block: NDArray[np.int32],
    chunk: NDArray[np.int32],
    sent: list[bytearray | _SparseMarks],
    npages: list[int],
    shift: int,
) -> list[int]:
    """Mark the pages of ``words`` (numpy arrays, with the block and chunk of each);
    the chunks with a page beyond its block."""
    import numpy as np

    page = words >> np.uint64(shift)
    limit = np.asarray(npages, np.uint64)[block]
    inside = page < limit
    beyond = np.unique(chunk[~inside]).tolist()
    for b in np.unique(block).tolist():
        pages = page[inside & (block == b)]
        marks = sent[b]
        if isinstance(marks, bytearray):
            np.frombuffer(marks, np.uint8)[pages] = 1
        else:
            marks.update(pages.tolist())
    return beyond


def _beyond_block(
    s: Section, sent: list[bytearray | _SparseMarks], npages: list[int], blocks: list[RamBlock]
) -> Iterator[Finding]:
    """A chunk's pages marked record by record, and the pages beyond their block reported."""
    p = _payload(s)
    mask = p.page_size - 1
    nblocks = len(blocks)
    beyond: dict[int, list[int]] = {}  # block -> [count, first offset, first payload offset]
    for word, bi, at in p.records():
        if not word & RAM_PAGE_KINDS or not 0 <= bi < nblocks:
            continue
        off = word & ~mask
        n = off // p.page_size
        if n < npages[bi]:
            sent[bi][n] = 1
        elif bi in beyond:
            beyond[bi][0] += 1
        else:
            beyond[bi] = [1, off, at]
    for bi, (count, off, at) in sorted(beyond.items()):
        b = blocks[bi]
        yield Finding(
            ERROR,
            "page-beyond-block",
            f"{count} page(s) of RAM block {b.name!r} lie beyond its {b.used_length} bytes "
            f"(first at block offset 0x{off:x})",
            offset=at - 8,
        )


def _mark_sent(
    page_words: Iterator[tuple[int, array]],
    sent: list[bytearray | _SparseMarks],
    npages: list[int],
    shift: int,
) -> bool:
    """Mark the pages of ``page_words``; False (nothing reported) if one lies beyond its block.

    A run's words come as one array, so the loop here is over ints only;
    the page index is the word shifted (the flags sit below the page size).
    """
    nblocks = len(sent)
    for bi, words in page_words:
        if not 0 <= bi < nblocks or not words:
            continue
        if max(words) >> shift >= npages[bi]:
            return False
        marks = sent[bi]
        for w in words:
            marks[w >> shift] = 1
    return True


class _SparseMarks:
    """The pages sent of a block declared larger than the input could fill.

    What :func:`check_ram` uses of the ``bytearray`` marks (``len``, item
    assignment, ``count(1)``, ``find(0)``; ``update`` with a batch's pages,
    where a bytearray is set through a numpy view), in memory proportional
    to the pages actually sent.
    """

    __slots__ = ("_n", "_sent")

    def __init__(self, n: int) -> None:
        self._n = n
        self._sent: set[int] = set()

    def __len__(self) -> int:
        return self._n

    def __setitem__(self, i: int, _value: int) -> None:
        self._sent.add(i)

    def update(self, pages: list[int]) -> None:
        self._sent.update(pages)

    def count(self, _value: int) -> int:
        return len(self._sent)

    def find(self, _value: int) -> int:
        i = 0
        while i in self._sent:
            i += 1
        return i if i < self._n else -1


def _marks(n: int, room: int) -> bytearray | _SparseMarks:
    return bytearray(n) if n <= room else _SparseMarks(n)
