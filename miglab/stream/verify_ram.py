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
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import TYPE_CHECKING

from miglab.findings import ERROR, Finding
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.ram_records import RamBlock, release_pages
from miglab.wire import RAM_PAGE_KINDS

if TYPE_CHECKING:
    from array import array

    import numpy as np
    from numpy.typing import NDArray

    from miglab.stream.progress import Progress

__all__ = ("check_ram",)


_BATCH_BYTES = 16 << 20  # stream bytes of the chunks checked (and released) together
_NUMPY_FROM = 4 << 20  # bytes of mixed runs in a batch from which numpy pays for its import
_READ_AROUND = 1 << 20  # what reading a chunk maps of the pages before it


def check_ram(stream: Stream, progress: Progress | None = None) -> Iterator[Finding]:
    """Findings about the RAM blocks and the pages the stream sends of them;
    ``progress`` is told ``("checking", offset, size)`` a batch of chunks at a time."""
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
    if not chunks or not ctx.blocks:
        return
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
        beyond = _mark_batch(batch, sent, npages, shift)
        for s in beyond:
            yield from _beyond_block(s, sent, npages, ctx.blocks)
        if mapping is not None and len(mapping) == len(source):
            # one call for the batch; the 1 MiB before covers what reading its
            # first chunk mapped of the pages before it (fault-around)
            start = max(0, released - released % mmap.PAGESIZE - _READ_AROUND)
            released = release_pages(mapping, start, last.offset + last.size)
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


def _mark_batch(
    batch: list[Section], sent: list[bytearray | _SparseMarks], npages: list[int], shift: int
) -> list[Section]:
    """Mark the pages the chunks of ``batch`` send; the chunks with a page beyond its block."""
    # the reader's run entries (read again if it did not keep them), None once expanded
    entries = [_payload(s).run_entries() for s in batch]
    mixed = sum(
        stop - r.word_at(i) for r in entries if r is not None for i, stop in r.mixed.items()
    )
    if mixed < _NUMPY_FROM:
        return [
            s
            for s, r in zip(batch, entries, strict=True)
            if not _mark_sent(
                (r if r is not None else _payload(s)).page_words(), sent, npages, shift
            )
        ]
    from miglab.stream.verify_walk import PageWords

    words = PageWords(_payload(batch[0]).source, _payload(batch[0]).page_size)
    beyond = []
    for k, (s, r) in enumerate(zip(batch, entries, strict=True)):
        if r is not None:
            words.add(r, k, len(sent))
        elif not _mark_sent(_payload(s).page_words(), sent, npages, shift):
            beyond.append(k)
    beyond += _mark_words(*words.read(), sent, npages, shift)
    return [batch[k] for k in sorted(set(beyond))]


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
