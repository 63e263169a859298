"""Reading RAM records: the block list, what the reader carries between chunks, the record loop.

:func:`read_runs` is ``ram_load_precopy``'s loop over one chunk (QEMU-FORMAT.md
2): every record is checked as QEMU checks it (known flags, a block named
before CONTINUE, lengths inside the input, XBZRLE deltas) and kept in the
chunk's index entries (:class:`~miglab.stream.ram_runs.RecordRuns`), a run
of same-kind or mixed zero/data records as one entry.  Pages of a mapped
file are dropped from the resident set behind the loop (:func:`release_pages`),
so memory stays flat in the stream's size.  :mod:`miglab.stream.ram` builds
the chunk's :class:`~miglab.stream.ram.RamPayload` from these entries.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from miglab.errors import MigrationFormatError, TruncatedStreamError
from miglab.stream.ram_runs import RUN_MIN, RecordRuns, mixed_run, run_length
from miglab.stream.xbzrle import check_xbzrle
from miglab.visitors.qemufile import QEMUFileReader
from miglab.wire import (
    RAM_COMPRESS_PAGE,
    RAM_CONTINUE,
    RAM_EOS,
    RAM_HOOK,
    RAM_MEM_SIZE,
    RAM_MULTIFD_FLUSH,
    RAM_PAGE,
    RAM_PAGE_KINDS,
    RAM_XBZRLE,
    RAM_ZERO,
    RamFlag,
)

__all__ = ("RELEASE_EVERY", "RamBlock", "RamContext", "read_runs", "release_pages")

_BE64 = struct.Struct(">Q")
_BE32 = struct.Struct(">I")
_BE16 = struct.Struct(">H")
_KNOWN = int(
    RamFlag.ZERO
    | RamFlag.MEM_SIZE
    | RamFlag.PAGE
    | RamFlag.EOS
    | RamFlag.CONTINUE
    | RamFlag.XBZRLE
    | RamFlag.COMPRESS_PAGE
    | RamFlag.MULTIFD_FLUSH
)
RELEASE_EVERY = 16 << 20  # bytes of a mapped input scanned between releases


@dataclass(frozen=True, slots=True)
class RamBlock:
    """One entry of the block list sent in the first RAM chunk.

    Attributes:
        name: the RAMBlock idstr (``pc.ram``, ``/rom@etc/acpi/tables``).
        used_length: bytes of the block.
        addr: guest physical address (sent only with x-ignore-shared).
    """

    name: str
    used_length: int
    addr: int | None = None


@dataclass(slots=True)
class RamContext:
    """What the RAM reader carries from one chunk to the next.

    Attributes:
        page_size: the target page size (splits words into offset and flags).
        ignore_shared: the x-ignore-shared capability (adds a GPA per block).
        blocks: the block list, once read.
        last_block: index into ``blocks`` of the block the last record named,
            which CONTINUE records refer to (it spans chunks, as in QEMU).
        indexed: index entries the chunks read so far keep (see
            :class:`RamPayload`).
        on_chunk: called with each chunk's run entries (and this context) as
            soon as they are read, while the chunk's input pages are still
            mapped and in the CPU's caches (``miglab verify`` marks the pages
            sent in the reader's pass); it then owns dropping those pages
            from the resident set (:func:`release_pages`), which the reader
            otherwise does at the end of each chunk.
    """

    page_size: int = 4096
    ignore_shared: bool = False
    blocks: list[RamBlock] = field(default_factory=list)
    last_block: int = -1
    indexed: int = 0
    on_chunk: Callable[[RecordRuns, RamContext], None] | None = None


def read_runs(r: QEMUFileReader, ctx: RamContext) -> tuple[RecordRuns, list[RamBlock] | None]:
    """The run entries of one chunk and the block list it sent, if any."""
    view = r.view
    end = r.end
    pos = r.pos
    page_size = ctx.page_size
    mask = page_size - 1
    unpack64 = _BE64.unpack_from
    # array.array keeps 8 bytes or fewer per column (a list of ints costs ~36);
    # a run of same-kind records is one entry (count > 1, see ram_runs).
    words = array("Q")
    named = array("b")
    blocks_idx = array("i")
    starts = array("q")
    lengths = array("i")
    counts = array("i")
    name_at: dict[int, int] = {}
    mixed: dict[int, int] = {}
    # The flags of ZERO|CONTINUE and PAGE|CONTINUE in byte 7; a page the size of
    # real targets (4 KiB to 64 KiB), well inside sre's repeat limit.
    mixed_ok = 256 <= page_size <= 1 << 20
    block_list: list[RamBlock] | None = None
    by_name = {b.name: i for i, b in enumerate(ctx.blocks)}
    last = ctx.last_block
    mapping = view.obj if isinstance(view.obj, mmap.mmap) else None
    released = pos - pos % mmap.PAGESIZE
    while True:
        if mapping is not None and pos - released >= RELEASE_EVERY:
            released = release_pages(mapping, released, pos)
        if pos + 8 > end:
            raise TruncatedStreamError("stream ends inside the RAM section", offset=pos)
        word_at = pos
        (word,) = unpack64(view, pos)
        pos += 8
        flags = word & mask
        if flags & ~_KNOWN:
            if flags & RAM_HOOK:
                raise MigrationFormatError(
                    "RAM record uses the RDMA hook flag (0x80); RDMA streams carry pages out of band",
                    offset=word_at,
                )
            raise MigrationFormatError(f"unknown RAM flags 0x{flags:x}", offset=word_at)
        has_name = False
        if flags & RAM_PAGE_KINDS:
            if not flags & RAM_CONTINUE:
                if pos >= end:
                    raise TruncatedStreamError("stream ends before a RAM block name", offset=pos)
                n = view[pos]
                if pos + 1 + n > end:
                    raise TruncatedStreamError("stream ends inside a RAM block name", offset=pos)
                name = bytes(view[pos + 1 : pos + 1 + n]).decode("utf-8", "surrogateescape")
                pos += 1 + n
                has_name = True
                if name not in by_name:
                    raise MigrationFormatError(
                        f"RAM record names block {name!r}, which the block list does not have",
                        offset=word_at + 8,
                    )
                last = by_name[name]
            elif last < 0:
                raise MigrationFormatError(
                    "RAM record continues a block but no block was named before", offset=word_at
                )
        kind = flags & ~RAM_CONTINUE
        start = pos
        if kind == RAM_PAGE:
            pos += page_size
        elif kind == RAM_ZERO:
            pos += 1
        elif kind in (RAM_EOS, RAM_MULTIFD_FLUSH):
            pass
        elif kind == RAM_MEM_SIZE:
            block_list = _read_block_list(r, pos, word & ~mask, ctx)
            pos = r.pos
            by_name = {b.name: i for i, b in enumerate(ctx.blocks)}
        elif kind == RAM_XBZRLE:
            if pos + 3 > end:
                raise TruncatedStreamError("stream ends inside an XBZRLE header", offset=pos)
            if view[pos] != 1:
                raise MigrationFormatError(
                    f"XBZRLE encoding flag is 0x{view[pos]:02x}, expected 0x01", offset=pos
                )
            (n,) = _BE16.unpack_from(view, pos + 1)
            if n > page_size:
                raise MigrationFormatError(
                    f"XBZRLE delta of {n} bytes exceeds a page", offset=pos + 1
                )
            if pos + 3 + n > end:
                raise TruncatedStreamError("stream ends inside an XBZRLE delta", offset=pos + 3)
            check_xbzrle(view[pos + 3 : pos + 3 + n], page_size, pos + 3)  # as load_xbzrle
            pos += 3 + n
        elif kind == RAM_COMPRESS_PAGE:
            if pos + 4 > end:
                raise TruncatedStreamError("stream ends inside a compressed page", offset=pos)
            (n,) = _BE32.unpack_from(view, pos)
            if n > 2 * page_size + 64:
                raise MigrationFormatError(f"compressed page of {n} bytes is too long", offset=pos)
            pos += 4 + n
        else:
            raise MigrationFormatError(
                f"unknown combination of RAM flags 0x{flags:x}", offset=word_at
            )
        if pos > end:
            raise TruncatedStreamError("stream ends inside a RAM record", offset=start)
        words.append(word)
        named.append(has_name)
        blocks_idx.append(last if flags & RAM_PAGE_KINDS else -1)
        starts.append(start)
        lengths.append(pos - start)
        counts.append(1)
        if has_name:
            name_at[len(counts) - 1] = word_at
        if kind == RAM_EOS:
            break
        if kind in (RAM_PAGE, RAM_ZERO) and flags & RAM_CONTINUE:
            # A run is worth a batch only if the record RUN_MIN - 1 strides on has
            # the same flags too (in a shuffled mix of kinds it almost never does).
            stride = 8 + pos - start
            probe = pos + (RUN_MIN - 1) * stride
            if probe + 8 <= end and unpack64(view, probe)[0] & mask == flags:
                n = run_length(view, pos, end, flags, stride, mask)
                if n:
                    counts[-1] += n
                    pos += n * stride
                    continue
            # Zero and data pages in any order: one entry, found in C, once it
            # spans what RUN_MIN zero pages would.
            stop = mixed_run(view, pos, end, page_size) if mixed_ok else pos
            if stop - pos >= RUN_MIN * 9:
                mixed[len(counts)] = stop
                words.append(unpack64(view, pos)[0])
                named.append(False)
                blocks_idx.append(last)
                starts.append(pos + 8)
                lengths.append(1 if view[pos + 7] == RAM_ZERO | RAM_CONTINUE else page_size)
                counts.append(0)  # counted when asked for (RecordRuns.records)
                pos = stop
    r.pos = pos
    ctx.last_block = last
    runs = RecordRuns(
        words, named, blocks_idx, starts, lengths, counts, name_at, mixed, view, page_size
    )
    if ctx.on_chunk is not None:
        ctx.on_chunk(runs, ctx)
    elif mapping is not None:
        release_pages(mapping, released, pos)
    return runs, block_list


def release_pages(mapping: mmap.mmap, start: int, upto: int) -> int:
    """Drop already-scanned file pages from this process's resident set.

    Reading the page words of a memory-mapped stream touches every page of
    the file; the kernel keeps them in the page cache either way, but without
    this hint they also count towards our RSS (1 GiB for a 1 GiB stream).
    Payload views stay valid: the pages are read back from the cache on use.
    """
    end = upto - upto % mmap.PAGESIZE
    if end > start:
        mapping.madvise(mmap.MADV_DONTNEED, start, end - start)
    return end


def _read_block_list(r: QEMUFileReader, pos: int, total: int, ctx: RamContext) -> list[RamBlock]:
    """The MEM_SIZE block list: (name, used_length[, gpa]) until lengths reach total."""
    r.pos = pos
    seen = 0
    out: list[RamBlock] = []
    while seen < total:
        at = r.pos
        name = r.counted_string("a RAM block name").decode("utf-8", "surrogateescape")
        length = r.be64("a RAM block length")
        addr = r.be64("a RAM block address") if ctx.ignore_shared else None
        if length > total - seen:
            raise MigrationFormatError(
                f"RAM block {name!r} of {length} bytes overruns the announced total {total}",
                offset=at,
            )
        if length == 0 and len(out) > 4096:
            raise MigrationFormatError("RAM block list does not add up", offset=at)
        seen += length
        out.append(RamBlock(name, length, addr))
    ctx.blocks[:] = out
    return out
