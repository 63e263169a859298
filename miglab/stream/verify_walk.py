"""The page words of a batch of RAM chunks at once, with numpy (``miglab verify`` on big streams).

Verify needs the page word of every record a chunk sends.  Single records
and same-kind runs have their words at offsets known from the reader's
index entries (:class:`~miglab.stream.ram_runs.RecordRuns`); a *mixed* run
of zero and data records does not: where its k-th record starts depends on
the flags of every record before it, a sequential walk.  One run at a time
that walk is a regular expression's ``findall``
(:func:`~miglab.stream.ram_runs.mixed_words`), which builds a bytes object
per record, half of verify's time on a big guest.  Here the mixed runs of a
whole batch of chunks are walked side by side: one numpy step moves every
run on by one record (9 bytes after a zero page's flag byte, 8 + page size
after a data page's), so Python's cost is per step, not per record.  The
few runs still going when fewer than :data:`_WALK_MIN` are left are read
with ``mixed_words`` from where the walk stopped.  All words are then read
from the input in one gather (an unaligned big-endian view of it).

Every run walked here is one the reader matched, so its records are known to
be whole ``ZERO|CONTINUE`` or ``PAGE|CONTINUE`` records up to its end; a
walk that steps past that end is dropped, never read as a record.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import numpy as np

from miglab.stream.ram_runs import RecordRuns, mixed_words
from miglab.wire import RAM_CONTINUE, RAM_PAGE, RAM_PAGE_KINDS, RAM_ZERO

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ("PageWords",)

_WALK_MIN = 8  # fewer mixed runs left than this: the rest are read with mixed_words
_CHECK_EVERY = 16  # walk steps between dropping the runs that have ended


class PageWords:
    """Where the page words of a batch of chunks sit, collected entry by entry, then read.

    Each word is tagged with the index (in the batch) of the chunk it came
    from and with its block, for the caller to mark pages and to find the
    chunks that send a page beyond its block.
    """

    def __init__(self, source: memoryview, page_size: int) -> None:
        self.source = source
        self.page_size = page_size
        self.mixed_bytes = 0  # bytes of mixed runs added (what walking is worth)
        self._at = array("q")  # word offsets known from the entries
        self._at_block = array("i")
        self._at_chunk = array("i")
        self._steps: list[tuple[int, int, int, int, int]] = []  # at, stride, n, block, chunk
        self._start = array("q")  # mixed runs: first word offset, end, block, chunk
        self._stop = array("q")
        self._run_block = array("i")
        self._run_chunk = array("i")

    def add(self, runs: RecordRuns, chunk: int, nblocks: int) -> None:
        """The page records of one chunk's entries (those of a block in the list)."""
        kinds = RAM_PAGE_KINDS & (self.page_size - 1)
        mixed = runs.mixed
        for i, n in enumerate(runs.count):
            block = runs.block[i]
            if not 0 <= block < nblocks:
                continue
            if i in mixed:
                at = runs.word_at(i)
                self._start.append(at)
                self._stop.append(mixed[i])
                self._run_block.append(block)
                self._run_chunk.append(chunk)
                self.mixed_bytes += mixed[i] - at
            elif n > 1:
                self._steps.append((runs.word_at(i), 8 + runs.length[i], n, block, chunk))
            elif runs.word[i] & kinds:
                self._at.append(runs.word_at(i))
                self._at_block.append(block)
                self._at_chunk.append(chunk)

    def read(self) -> tuple[NDArray[np.uint64], NDArray[np.int32], NDArray[np.int32]]:
        """``(words, block, chunk)`` of every page record added, in no particular order."""
        at = [np.frombuffer(self._at, np.int64)]
        block = [np.frombuffer(self._at_block, np.int32)]
        chunk = [np.frombuffer(self._at_chunk, np.int32)]
        for first, stride, n, b, c in self._steps:
            at.append(np.arange(first, first + n * stride, stride, dtype=np.int64))
            block.append(np.full(n, b, np.int32))
            chunk.append(np.full(n, c, np.int32))
        tails: list[tuple[int, int, int]] = []
        if len(self._start):
            walked, run, tails = self._walk()
            at.append(walked)
            block.append(np.frombuffer(self._run_block, np.int32)[run])
            chunk.append(np.frombuffer(self._run_chunk, np.int32)[run])
        offsets = np.concatenate(at)
        if len(self.source) >= 8:
            # every byte offset as the start of a be64 word (unaligned reads)
            view = np.ndarray((len(self.source) - 7,), ">u8", buffer=self.source, strides=(1,))
            words = [view[offsets].astype(np.uint64)]
            del view
        else:
            words = [np.zeros(0, np.uint64)]
        for pos, stop, r in tails:
            got = np.frombuffer(mixed_words(self.source, pos, stop, self.page_size), np.uint64)
            words.append(got)
            block.append(np.full(len(got), self._run_block[r], np.int32))
            chunk.append(np.full(len(got), self._run_chunk[r], np.int32))
        return np.concatenate(words), np.concatenate(block), np.concatenate(chunk)

    def _walk(self) -> tuple[NDArray[np.int64], NDArray[np.int64], list[tuple[int, int, int]]]:
        """Word offsets of the mixed runs' records and the run of each; the runs left over.

        A left-over run is ``(offset of its next record, its end, run index)``.
        """
        step = np.zeros(256, np.int64)  # bytes from a record to the next, by its flag byte
        step[RAM_ZERO | RAM_CONTINUE] = 9
        step[RAM_PAGE | RAM_CONTINUE] = 8 + self.page_size
        flag_byte = np.frombuffer(self.source, np.uint8)[7:]  # byte 7 of the word at each offset
        pos = np.frombuffer(self._start, np.int64)
        stop = np.frombuffer(self._stop, np.int64)
        run = np.arange(len(pos))
        seen_pos: list[NDArray[np.int64]] = []
        seen_run: list[NDArray[np.int64]] = []
        n = 0
        while len(pos) >= _WALK_MIN:
            seen_pos.append(pos)
            seen_run.append(run)
            # past a run's end the walk goes on through the chunk's records and
            # stops at its EOS word (step 0); those offsets are dropped below
            pos = pos + step.take(flag_byte.take(pos, mode="clip"))
            n += 1
            if n % _CHECK_EVERY == 0:
                live = pos < stop
                if not live.all():
                    pos, run, stop = pos[live], run[live], stop[live]
        live = pos < stop
        tails = list(zip(pos[live].tolist(), stop[live].tolist(), run[live].tolist(), strict=True))
        del flag_byte
        if not seen_pos:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), tails
        offsets = np.concatenate(seen_pos)
        runs = np.concatenate(seen_run)
        keep = offsets < np.frombuffer(self._stop, np.int64)[runs]
        return offsets[keep], runs[keep], tails
