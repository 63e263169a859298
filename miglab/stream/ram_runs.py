"""Runs of RAM records: found with byte slices, kept as one entry, expanded on demand.

QEMU sends most of RAM as runs of same-block records of one kind
(``PAGE|CONTINUE`` every 8 + page size bytes, ``ZERO|CONTINUE`` every 9;
QEMU-FORMAT.md 2).  Their page words sit at a fixed stride, so whether the
next ``count`` records share the flags is one comparison of stepped byte
slices (``data[at + 7 : stop : stride]``, the low byte of every word, and
the masked byte before it where the page size needs more than 8 flag bits),
done in C without numpy.  The reader then keeps a run as *one* index entry
(its first record and a count): records of a run differ only in their
page word, which stays in the input, where :func:`expand` and
:func:`iter_records` read it when a caller asks for the per-record columns.

An index entry is ``(word, named, block, pos, length, count)``: the first
record's page word and payload offset ``pos``; record ``k`` of a run has its word at
``pos - 8 + k * (8 + length)`` and its payload 8 bytes later.  A record
that names its block (never in a run) has the name between word and
payload; its word's offset is kept aside (``name_at``).

A guest's RAM is seldom that regular: zero and data pages alternate, so
same-kind runs are short.  A *mixed run* is a run of ``ZERO|CONTINUE`` and
``PAGE|CONTINUE`` records in any order (9 or 8 + page size bytes each).
One regular expression finds where it ends (:func:`mixed_run`; sre walks
the records in C, a page's bytes skipped, not read) and another gives its
page words (``(?=(.{8}))`` before each record); an entry keeps the run's
end offset (``mixed``), and a record's payload offset follows from the
flags of the words before it.  Every record such a run covers is one the
record-by-record reader accepts, and a run stops before the first record
it would not, so errors are raised by the same code at the same offsets.
"""

from __future__ import annotations

import mmap
import re
import struct
import sys
from array import array
from collections.abc import Iterator
from functools import lru_cache

from miglab.errors import MiglabError
from miglab.wire import RAM_CONTINUE, RAM_PAGE, RAM_PAGE_KINDS, RAM_ZERO

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    import numpy as np

__all__ = ("RUN_MIN", "RecordRuns", "WordBatch", "mixed_run", "mixed_words", "run_length")

RUN_MIN = 8  # a run shorter than this is read record by record
_RUN_BATCH = 1 << 16
_RUN_BYTES = 16 << 20  # at most one release interval of the reader per run
_ZERO_CONT = RAM_ZERO | RAM_CONTINUE  # 0x22
_PAGE_CONT = RAM_PAGE | RAM_CONTINUE  # 0x28


@lru_cache(maxsize=16)
def _flag_bytes(mask: int, flags: int) -> tuple[tuple[int, bytes | None, int], ...]:
    """``(byte index in the be64 word, translate table or None, expected byte)``.

    One entry per byte of the word that holds flag bits; the table masks off
    the offset bits sharing a byte with the flags (byte 6 at 4 KiB pages).
    """
    out = []
    for k in range(8):
        shift = 8 * (7 - k)
        m = (mask >> shift) & 0xFF
        if m:
            table = None if m == 0xFF else bytes(i & m for i in range(256))
            out.append((k, table, (flags >> shift) & 0xFF))
    return tuple(out)


def _stepped(view: memoryview, start: int, stop: int, step: int) -> bytes | bytearray:
    """``bytes(view[start:stop:step])``, from the buffer itself where it is the whole view.

    Stepped slices of bytes and mmap are a C loop over the bytes; a stepped
    memoryview goes through the generic buffer copy, several times slower.
    """
    base = view.obj
    if isinstance(base, bytes | bytearray | mmap.mmap) and len(base) == view.nbytes:
        return base[start:stop:step]
    return view[start:stop:step].tobytes()


def run_length(view: memoryview, pos: int, end: int, flags: int, stride: int, mask: int) -> int:
    """How many whole records from ``pos`` on have ``flags`` at a ``stride``-byte step.

    At most one release interval's worth (16 MiB, so a mapped file's scanned
    pages can be dropped between runs) and 0 below :data:`RUN_MIN` records.
    Batches start at ``RUN_MIN`` records and double while the run goes on,
    so a short run costs little more than its own records; where a run
    breaks, the record with other flags is left to the caller's loop.
    """
    limit = min((end - pos) // stride, (16 << 20) // stride)
    if limit < RUN_MIN:
        return 0
    checks = _flag_bytes(mask, flags)
    n = 0
    size = RUN_MIN
    while n < limit:
        count = min(size, limit - n)
        at = pos + n * stride
        good = count
        for k, table, want in checks:
            col = _stepped(view, at + k, at + count * stride, stride)
            if table is not None:
                col = col.translate(table)
            if col != bytes((want,)) * count:
                good = min(good, count - len(col.lstrip(bytes((want,)))))
        n += good
        if good < count:
            break
        size = min(2 * size, _RUN_BATCH)
    return n if n >= RUN_MIN else 0


def _word_pattern(mask: int, flags: int) -> bytes:
    """A regular expression for a be64 page word whose bits under ``mask`` are ``flags``."""
    out = b""
    for k in range(8):
        m = (mask >> (8 * (7 - k))) & 0xFF
        want = (flags >> (8 * (7 - k))) & 0xFF
        allowed = [b for b in range(256) if b & m == want]
        if len(allowed) == 256:
            out += b"."
        else:
            out += b"[" + b"".join(b"\\x%02x" % b for b in allowed) + b"]"
    return out


@lru_cache(maxsize=8)
def _mixed_patterns(
    page_size: int,
) -> tuple[re.Pattern[bytes], re.Pattern[bytes], re.Pattern[bytes]]:
    """(the end of a mixed run, one record with an empty group, one record's word) patterns.

    The last two only ever see a run the first one matched, so they tell a
    zero record from a data record by the flag byte alone (byte 7 of the
    word: the page size is at least 256).
    """
    mask = page_size - 1
    record = (
        b"(?:" + _word_pattern(mask, _ZERO_CONT) + b"."
        b"|" + _word_pattern(mask, _PAGE_CONT) + b".{%d})" % page_size
    )
    flagged = b"(?:\\x%02x.|\\x%02x.{%d})" % (_ZERO_CONT, _PAGE_CONT, page_size)
    return (
        re.compile(b"(?s)" + record + b"{0,%d}+" % _RUN_BATCH),
        re.compile(b"(?s).{7}" + flagged + b"()"),
        re.compile(
            b"(?s)(.{8})(?:(?<=\\x%02x).|(?<=\\x%02x).{%d})" % (_ZERO_CONT, _PAGE_CONT, page_size)
        ),
    )


def mixed_run(view: memoryview, pos: int, end: int, page_size: int) -> int:
    """The end offset of the mixed run from ``pos`` on (``pos`` for none).

    At most 65,536 records and 16 MiB; the record after the run is left to
    the caller's loop.  Its records are counted only when asked for
    (:attr:`RecordRuns.records`): loading a stream does not need the count.
    """
    run = _mixed_patterns(page_size)[0]
    return run.match(view, pos, min(end, pos + _RUN_BYTES)).end()  # type: ignore[union-attr]


def mixed_words(view: memoryview, start: int, stop: int, page_size: int) -> array:
    """The page words of the mixed run of records between ``start`` and ``stop``."""
    words = array("Q", b"".join(_mixed_patterns(page_size)[2].findall(view, start, stop)))
    if sys.byteorder == "little":
        words.byteswap()
    return words


@lru_cache(maxsize=32)
def _run_struct(payload: int, count: int) -> struct.Struct:
    """``count`` be64 words, each followed by ``payload`` bytes skipped."""
    return struct.Struct(">" + f"Q{payload}x" * count)


class RecordRuns:
    """The index entries of one RAM chunk, as :func:`~miglab.stream.ram.read_ram` built them.

    Attributes:
        word, named, block, pos, length: per entry, as the per-record columns of
            :class:`~miglab.stream.ram.RamPayload` (its first record's).
        count: records in each entry (1, or the length of a run).
        name_at: entry index -> input offset of the page word, for the
            records that name their block (the name sits between the two).
        mixed: entry index -> input offset of the end of a mixed run (whose
            ``count`` is 0 until :attr:`records` is first asked for).
        source: the input the entries point into.
        page_size: the target page size (a mixed record's payload length).
    """

    __slots__ = (
        "block",
        "count",
        "length",
        "mixed",
        "name_at",
        "named",
        "page_size",
        "pos",
        "source",
        "word",
    )

    def __init__(
        self,
        word: array,
        named: array,
        block: array,
        pos: array,
        length: array,
        count: array,
        name_at: dict[int, int],
        mixed: dict[int, int],
        source: memoryview,
        page_size: int,
    ) -> None:
        self.word, self.named, self.block = word, named, block
        self.pos, self.length, self.count = pos, length, count
        self.name_at, self.mixed = name_at, mixed
        self.source, self.page_size = source, page_size

    @property
    def counted(self) -> bool:
        """Whether every mixed run has been counted (reading its words' pages)."""
        return all(self.count[i] for i in self.mixed)

    @property
    def records(self) -> int:
        """Total records (a mixed run's are counted, in C, the first time)."""
        count = _mixed_patterns(self.page_size)[1]
        for i, stop in self.mixed.items():
            if not self.count[i]:
                self.count[i] = len(count.findall(self.source, self.pos[i] - 8, stop))
        return sum(self.count)

    def span(self) -> tuple[int, int]:
        """Input offsets of the first payload and of the end of the last record."""
        last = len(self.count) - 1
        if last < 0:
            return 0, 0
        if last in self.mixed:
            return self.pos[0], self.mixed[last]
        n, length = self.count[last], self.length[last]
        return self.pos[0], self.pos[last] + (n - 1) * (8 + length) + length

    def word_at(self, i: int) -> int:
        """Input offset of entry ``i``'s first page word."""
        return self.name_at[i] if self.named[i] else self.pos[i] - 8

    def _words(self, i: int) -> Iterator[int] | array:
        """The page words of entry ``i``, read from the input."""
        at = self.word_at(i)
        if i in self.mixed:
            return mixed_words(self.source, at, self.mixed[i], self.page_size)
        return self._stepped_words(i, at)

    def _stepped_words(self, i: int, at: int) -> Iterator[int]:
        left = self.count[i]
        if left == 1:
            yield self.word[i]
            return
        stride = 8 + self.length[i]
        while left:
            batch = min(left, 4096)
            yield from _run_struct(stride - 8, batch).unpack_from(self.source, at)
            at += batch * stride
            left -= batch

    def _mixed_lengths(self, words: array) -> list[int]:
        """The payload length of each record of a mixed run (1 for a zero page)."""
        mask, page = self.page_size - 1, self.page_size
        return [1 if w & mask == _ZERO_CONT else page for w in words]

    def iter_records(self) -> Iterator[tuple[int, int, int, int]]:
        """``(word, block index, payload offset, payload length)`` of every record, in order."""
        entries = zip(self.count, self.word, self.block, self.pos, self.length, strict=True)
        mask, page = self.page_size - 1, self.page_size
        for i, (n, word, block, pos, length) in enumerate(entries):
            if n == 1:  # a record on its own
                yield word, block, pos, length
            elif i in self.mixed:
                for w in self._words(i):
                    size = 1 if w & mask == _ZERO_CONT else page
                    yield w, block, pos, size
                    pos += 8 + size
            else:
                stride = 8 + length
                for w in self._words(i):
                    yield w, block, pos, length
                    pos += stride

    def page_words(self) -> Iterator[tuple[int, array]]:
        """``(block index, page words)`` of the page records, an entry at a time.

        A run's words come as one ``array('Q')`` built in C, so a caller
        marking pages sent loops over ints, not over record tuples.
        """
        kinds = RAM_PAGE_KINDS & (self.page_size - 1)
        for i, n in enumerate(self.count):
            if n == 1 and not self.word[i] & kinds:
                continue
            words = self._words(i)
            yield self.block[i], words if isinstance(words, array) else array("Q", words)

    def expand(self) -> tuple[array, array, array, array, array]:
        """Per-record ``words, named, block, pos, length`` columns (array.array)."""
        words, named, block = array("Q"), array("b"), array("i")
        pos, length = array("q"), array("i")
        for i, n in enumerate(self.count):
            run = self._words(i)
            words.extend(run)
            if isinstance(run, array):  # a mixed run's words
                n = self.count[i] = len(run)
            if n == 1:
                named.append(self.named[i])
                block.append(self.block[i])
                pos.append(self.pos[i])
                length.append(self.length[i])
                continue
            named.frombytes(bytes(n))
            block.extend(array("i", (self.block[i],)) * n)
            if i in self.mixed:
                sizes = self._mixed_lengths(words[len(words) - n :])
                at = self.pos[i]
                for size in sizes:
                    pos.append(at)
                    at += 8 + size
                length.extend(sizes)
                continue
            size = self.length[i]
            pos.extend(range(self.pos[i], self.pos[i] + n * (8 + size), 8 + size))
            length.extend(array("i", (size,)) * n)
        return words, named, block, pos, length

    def expand_numpy(self) -> tuple[np.ndarray, ...]:
        """:meth:`expand` with numpy (for callers that asked for numpy columns)."""
        import numpy as np

        if self.mixed:  # the payload offsets follow the words: expand, then view
            dtypes = ("uint64", "bool", "int32", "int64", "int32")
            cols = self.expand()
            return tuple(np.frombuffer(c, d) for c, d in zip(cols, dtypes, strict=True))
        count = np.frombuffer(self.count, np.int32).astype(np.int64)
        n = int(count.sum())
        entry = np.repeat(np.arange(len(count)), count)
        first = np.cumsum(count) - count  # record index of each entry's first record
        length = np.frombuffer(self.length, np.int32)
        pos = np.frombuffer(self.pos, np.int64)[entry] + (np.arange(n) - first[entry]) * (
            8 + length[entry].astype(np.int64)
        )
        word_at = pos - 8
        for i, at in self.name_at.items():
            word_at[first[i]] = at
        raw = np.frombuffer(self.source, np.uint8)
        words = raw[word_at[:, None] + np.arange(8)].view(">u8").ravel().astype(np.uint64)
        named = np.frombuffer(self.named, np.int8)[entry].astype(bool)
        block = np.frombuffer(self.block, np.int32)[entry]
        return words, named, block, pos, length[entry]


class WordBatch:
    """The page words of many chunks' records and their bytes on the wire, read at once.

    For one pass over a whole stream (:func:`~miglab.stream.pages.block_totals`).
    A chunk of a precopy stream holds a few hundred records in two or three
    entries, so numpy calls per chunk would cost more than its reading:
    :meth:`add` appends a chunk's entries to the batch's columns (in C), and
    :meth:`take` turns them into per-record columns with one set of numpy
    calls and one strided copy out of the input per run.

    Attributes:
        records: records added since the last :meth:`take`.
    """

    def __init__(self, name_len: np.ndarray) -> None:
        """``name_len[b]``: block ``b``'s counted name, length byte included."""
        self._name_len = name_len
        self._clear()

    def _clear(self) -> None:
        self.records = 0
        self._word, self._named, self._block = array("Q"), array("b"), array("i")
        self._pos, self._length, self._count = array("q"), array("i"), array("i")
        # batch entry -> (the mixed run's words, input bytes it spans)
        self._mixed: dict[int, tuple[array, int]] = {}
        self._source: memoryview | None = None

    def add(self, runs: RecordRuns) -> None:
        """Append the entries of one chunk (of the same input as the others)."""
        if self._source is not None and runs.source is not self._source:
            raise MiglabError("a word batch reads the chunks of one input, not of two")
        self._source = runs.source
        first = len(self._count)
        for i, stop in runs.mixed.items():
            at = runs.word_at(i)
            words = mixed_words(runs.source, at, stop, runs.page_size)
            runs.count[i] = len(words)
            self._mixed[first + i] = (words, stop - at)
        self._word.extend(runs.word)
        self._named.extend(runs.named)
        self._block.extend(runs.block)
        self._pos.extend(runs.pos)
        self._length.extend(runs.length)
        self._count.extend(runs.count)
        self.records += sum(runs.count)

    def add_records(
        self, words: np.ndarray, named: np.ndarray, block: np.ndarray, length: np.ndarray
    ) -> None:
        """Append the per-record columns of an expanded chunk (an entry per record)."""
        self._word.frombytes(words.astype("uint64").tobytes())
        self._named.frombytes(named.astype("int8").tobytes())
        self._block.frombytes(block.astype("int32").tobytes())
        self._length.frombytes(length.astype("int32").tobytes())
        self._pos.frombytes(bytes(8 * len(words)))  # a record on its own needs no offset
        self._count.extend(array("i", (1,)) * len(words))
        self.records += len(words)

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(words, block, wire)`` of the records added, and an empty batch.

        ``words`` (uint64) and ``block`` (int32, -1 for none) have a value per
        record, in input order; ``wire`` (int64) is per block: the bytes of
        its records (word, block name where written, payload), records of no
        block (EOS, the block list) left out.
        """
        import numpy as np

        count = np.frombuffer(self._count, np.int32)
        ends = np.cumsum(count, dtype=np.int64)
        words = np.empty(int(ends[-1]) if len(ends) else 0, np.uint64)
        one = count == 1
        words[(ends - 1)[one]] = np.frombuffer(self._word, np.uint64)[one]
        mixed, src = self._mixed, self._source
        for i in np.flatnonzero(count > 1).tolist():
            stop, n = int(ends[i]), self._count[i]
            if i in mixed:
                words[stop - n : stop] = np.frombuffer(mixed[i][0], np.uint64)
            else:
                step = (8 + self._length[i],)
                words[stop - n : stop] = np.ndarray((n,), ">u8", src, self._pos[i] - 8, step)
        block = np.frombuffer(self._block, np.int32)
        per = count * (8 + np.frombuffer(self._length, np.int32).astype(np.int64))
        per += np.frombuffer(self._named, np.int8) * self._name_len[np.maximum(block, 0)]
        for i, (_, spans) in mixed.items():
            per[i] = spans
        inside = block >= 0
        wire = np.bincount(block[inside], weights=per[inside], minlength=len(self._name_len))
        out = words, np.repeat(block, count), wire.astype(np.int64)
        self._clear()
        return out
