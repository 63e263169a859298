"""Verify's RAM checks: the block list, every page sent, none beyond its block.

Precopy sends every page of every block at least once (``ram_save_setup``
then the dirty bitmap's passes), each inside its block.  One byte per page
marks what was sent, in plain Python (numpy's import costs more than the
loop here on all but huge streams), from the words of a run at a time
(:meth:`~miglab.stream.ram.RamPayload.page_words`).  A block may *declare*
any size; marks beyond what the input could fill are kept sparse, never
allocated by the declared size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from miglab.findings import ERROR, Finding
from miglab.stream.model import SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.wire import RAM_PAGE_KINDS

if TYPE_CHECKING:
    from miglab.stream.progress import Progress

__all__ = ("check_ram",)


def check_ram(stream: Stream, progress: Progress | None = None) -> Iterator[Finding]:
    """Findings about the RAM blocks and the pages the stream sends of them;
    ``progress`` is told ``("checking", offset, size)`` a chunk at a time."""
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
    # One byte per page and one pass over the records in plain Python: no
    # numpy, whose import costs more than this loop on all but huge streams.
    mask = page - 1
    # A block may *declare* any size: marks beyond what the input could fill
    # (each sent page costs at least 9 bytes) are kept sparse, not allocated.
    room = max(stream.source_size, 1 << 24)
    sent = [_marks(max(b.used_length // page, 0), room) for b in ctx.blocks]
    npages = [len(marks) for marks in sent]
    nblocks = len(ctx.blocks)
    shift = page.bit_length() - 1
    for s in chunks:
        if progress is not None:
            progress("checking", s.offset + s.size, stream.source_size)
        p = s.payload
        assert isinstance(p, RamPayload)
        if _mark_sent(p, sent, npages, shift):
            continue
        beyond: dict[int, list[int]] = {}  # block -> [count, first offset, first payload offset]
        for word, bi, at in p.records():
            if not word & RAM_PAGE_KINDS or not 0 <= bi < nblocks:
                continue
            off = word & ~mask
            n = off // page
            if n < npages[bi]:
                sent[bi][n] = 1
            elif bi in beyond:
                beyond[bi][0] += 1
            else:
                beyond[bi] = [1, off, at]
        for bi, (count, off, at) in sorted(beyond.items()):
            b = ctx.blocks[bi]
            yield Finding(
                ERROR,
                "page-beyond-block",
                f"{count} page(s) of RAM block {b.name!r} lie beyond its {b.used_length} bytes "
                f"(first at block offset 0x{off:x})",
                offset=at - 8,
            )
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


def _mark_sent(
    p: RamPayload, sent: list[bytearray | _SparseMarks], npages: list[int], shift: int
) -> bool:
    """Mark the pages ``p`` sends; False (nothing reported) if one lies beyond its block.

    A run's words come as one array, so the loop here is over ints only;
    the page index is the word shifted (the flags sit below the page size).
    A chunk with a page beyond its block is then read record by record, to
    report where.
    """
    nblocks = len(sent)
    for bi, words in p.page_words():
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

    The interface of the ``bytearray`` marks ``_check_ram`` uses (``len``,
    item assignment, ``count(1)``, ``find(0)``), in memory proportional to the
    pages actually sent.
    """

    __slots__ = ("_n", "_sent")

    def __init__(self, n: int) -> None:
        self._n = n
        self._sent: set[int] = set()

    def __len__(self) -> int:
        return self._n

    def __setitem__(self, i: int, _value: int) -> None:
        self._sent.add(i)

    def count(self, _value: int) -> int:
        return len(self._sent)

    def find(self, _value: int) -> int:
        i = 0
        while i in self._sent:
            i += 1
        return i if i < self._n else -1


def _marks(n: int, room: int) -> bytearray | _SparseMarks:
    return bytearray(n) if n <= room else _SparseMarks(n)
