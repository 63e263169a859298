"""Writing a mapped-ram file: any stream's tree in QEMU's layout, pages at fixed offsets.

The page image is what a destination would hold after loading the stream (the last copy
of each page wins, a later ZERO record clears it); each block's pages go to
``pages_offset + n * page_size`` with ``pwritev``, zero pages stay holes, and the rest of
the stream is written around them (:mod:`~miglab.containers.mapped_ram_format`).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import IO, Any

from miglab.containers.mapped_ram_format import (
    ALIGNMENT,
    HEADER,
    HEADER_VERSION,
    NOT_PAGES,
    add_capability,
    bitmap_size,
)
from miglab.errors import MigrationFormatError
from miglab.files import pwrite, pwritev
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.writer import stream_to_bytes
from miglab.wire import RAM_CONTINUE, RAM_MEM_SIZE, RAM_PAGE, RAM_ZERO

__all__ = ("write",)

_BE64 = struct.Struct(">Q")


def write(stream: Stream, out: IO[bytes]) -> None:
    """Write ``stream`` as a mapped-ram file from ``out``'s position (a seekable file).

    The page image is what a destination would hold after loading the
    stream: per page, the last PAGE record wins and a later ZERO record
    clears it.  Zero pages are left as holes.

    Raises:
        MigrationFormatError: the stream has no configuration block or RAM
            block list, or carries XBZRLE / compressed pages (decode them first).
    """
    import numpy as np

    if stream.configuration is None:
        raise MigrationFormatError(
            "a mapped-ram file needs a configuration block (QEMU >= 2.4 machine)"
        )
    rams = [
        (i, s)
        for i, s in enumerate(stream.records)
        if isinstance(s, Section) and isinstance(s.payload, RamPayload)
    ]
    if not rams or rams[0][1].kind is not SectionKind.START:
        raise MigrationFormatError("a mapped-ram file needs the stream's RAM START section")
    first_i, first = rams[0]
    start_ram = first.payload
    assert isinstance(start_ram, RamPayload)
    if (
        start_ram.block_list is None
        or not len(start_ram)
        or int(start_ram.flags[0]) & ~RAM_CONTINUE != RAM_MEM_SIZE
    ):
        raise MigrationFormatError("the RAM START section does not begin with the block list")
    if stream.ram.ignore_shared:
        raise MigrationFormatError("x-ignore-shared streams are not written as mapped-ram")
    image = _page_image([s.payload for _, s in rams])  # type: ignore[misc]
    records = list(stream.records)
    for i, s in rams:
        assert isinstance(s.payload, RamPayload)
        records[i] = dataclasses.replace(s, payload=_without_pages(s.payload))
    config = add_capability(stream.configuration)
    prefix = Stream(stream.version, config, records[:first_i], eof=False)
    out.write(stream_to_bytes(prefix))
    start_bytes = _records_bytes(records[first_i : first_i + 1])
    head = 1 + 4 + 1 + len(first.name.encode()) + 4 + 4 + 8  # section header, MEM_SIZE word
    start_record = records[first_i]
    assert isinstance(start_record, Section) and isinstance(start_record.payload, RamPayload)
    listed = start_record.payload
    out.write(start_bytes[:head])
    page_size = stream.page_size
    for b_index, blk in enumerate(start_ram.block_list):
        raw = blk.name.encode("utf-8", "surrogateescape")
        out.write(bytes([len(raw)]) + raw + _BE64.pack(blk.used_length))
        bitmap_at = out.tell() + HEADER.size
        n = blk.used_length // page_size
        pages_at = -(-(bitmap_at + bitmap_size(n)) // ALIGNMENT) * ALIGNMENT
        out.write(HEADER.pack(HEADER_VERSION, page_size, bitmap_at, pages_at))
        out.flush()
        bits = np.zeros(bitmap_size(n) * 8, np.uint8)
        pages = image.get(b_index, {})
        if pages and max(pages) >= n:
            raise MigrationFormatError(
                f"page {max(pages)} is past the end of RAM block {blk.name!r}"
            )
        _write_pages(out, pages, pages_at, page_size)
        bits[list(pages)] = 1
        pwrite(out, np.packbits(bits, bitorder="little").tobytes(), bitmap_at)
        out.seek(pages_at + blk.used_length)
    out.write(start_bytes[head + len(listed.payload(0)) :])
    out.write(_records_bytes(records[first_i + 1 :], stream))
    out.truncate(out.tell())


_IOV_MAX = 1024


def _write_pages(out: Any, pages: dict[int, Any], pages_at: int, page_size: int) -> None:
    """pwritev each run of consecutive pages (at most IOV_MAX pages a call) to its slot."""
    run: list[Any] = []
    first = prev = -2
    for page in sorted(pages):
        if page != prev + 1 or len(run) == _IOV_MAX:
            if run:
                pwritev(out, run, pages_at + first * page_size)
            run, first = [], page
        run.append(pages[page])
        prev = page
    if run:
        pwritev(out, run, pages_at + first * page_size)


def _records_bytes(records: list[Any], whole: Stream | None = None) -> bytes:
    """The bytes of ``records`` (and, with ``whole``, its EOF, vmdesc and trailer)."""
    tail = Stream(configuration=None, records=records, eof=False)
    if whole is not None:
        tail.eof, tail.vmdesc, tail.trailer = whole.eof, whole.vmdesc, whole.trailer
    return stream_to_bytes(tail)[8:]


def _page_image(payloads: list[RamPayload]) -> dict[int, dict[int, memoryview | bytes]]:
    """block index -> page number -> bytes, for the pages the stream leaves non-zero."""
    import numpy as np

    image: dict[int, dict[int, memoryview | bytes]] = {}
    for p in payloads:
        kinds = p.flags & ~np.uint32(RAM_CONTINUE)
        if (kinds & np.uint32(NOT_PAGES)).any():
            raise MigrationFormatError(
                "the stream has XBZRLE or compressed pages, which mapped-ram cannot hold"
            )
        pages = (p.offsets // np.uint64(p.page_size)).tolist()
        for i in np.flatnonzero((kinds == RAM_PAGE) | (kinds == RAM_ZERO)).tolist():
            per = image.setdefault(int(p.block[i]), {})
            if kinds[i] == RAM_PAGE:
                per[pages[i]] = p.payload(i)
            else:
                if bytes(p.payload(i)) != b"\0":
                    raise MigrationFormatError("a ZERO page record with a non-zero fill byte")
                per.pop(pages[i], None)
    return image


def _without_pages(p: RamPayload) -> RamPayload:
    """The payload's block list, EOS and flush records, without its page records."""
    import numpy as np

    kinds = p.flags & ~np.uint32(RAM_CONTINUE)
    keep = np.flatnonzero((kinds != RAM_PAGE) & (kinds != RAM_ZERO))
    where = {int(old): new for new, old in enumerate(keep.tolist())}
    return RamPayload(
        source=p.source,
        page_size=p.page_size,
        words=p.words[keep],
        named=p.named[keep],
        block=p.block[keep],
        pos=p.pos[keep],
        length=p.length[keep],
        blocks=p.blocks,
        block_list=p.block_list,
        overrides={where[i]: d for i, d in p.overrides.items() if i in where},
    )
