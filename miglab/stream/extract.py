"""Unpack a stream into a directory: RAM blocks as sparse files, state as JSON.

``extract(stream_file, out_dir)`` writes

* ``ram/<safe name>.bin``: each RAM block, ``used_length`` bytes, holes where
  only zero pages were sent (the file is truncated to size first, and a zero
  page is only written when it replaces data sent earlier);
* ``blocks.json``: safe file name -> block name, length and address;
* ``state.json``: the decoded state (:func:`~miglab.stream.jsonview.stream_to_jsonable`).

Block names come from the stream, so they are never used as paths: every
name is reduced to ``[A-Za-z0-9._-]``, capped in length, made unique.  No
file is written through an entry found in ``out_dir``: the files are made
by :func:`miglab.files.output_directory` (``out_dir`` and ``ram/`` opened
with ``O_NOFOLLOW``, every file new under a temporary name, all renamed
into place once complete), so a symlink or hard link planted as
``state.json``, ``blocks.json`` or ``ram/*.bin`` is replaced, and the file
it points to is left as it was; a failed extract leaves none of its files.
The bytes written are charged to the output budget
(:class:`miglab.limits.OutputBudget`).  XBZRLE pages are applied to
the page as extracted so far (QEMU's xbzrle_decode_buffer); zlib-compressed
pages (``COMPRESS_PAGE``) are inflated, bounded to one page.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miglab.files import OutputFile, output_directory
from miglab.stream.jsonview import dumps, stream_to_jsonable
from miglab.stream.model import Stream
from miglab.stream.ram import RamBlock, RamPayload
from miglab.stream.reader import load
from miglab.stream.xbzrle import xbzrle_decode as xbzrle_apply
from miglab.wire import RamFlag

if TYPE_CHECKING:
    from miglab.stream.progress import Progress
    from miglab.vmstate.from_schema import SchemaIndex

__all__ = ("ExtractResult", "extract", "safe_names", "xbzrle_apply")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 96


@dataclass(slots=True)
class ExtractResult:
    """What :func:`extract` wrote.

    Attributes:
        directory: the output directory.
        files: safe file name (relative to ``directory``) -> block name.
        data_pages: pages written with data (PAGE, XBZRLE, COMPRESS_PAGE).
        zero_pages: zero-page records (holes unless they overwrote data).
        skipped: messages about records that could not be applied.
    """

    directory: Path
    files: dict[str, str] = field(default_factory=dict)
    data_pages: int = 0
    zero_pages: int = 0
    skipped: list[str] = field(default_factory=list)


def safe_names(blocks: list[RamBlock]) -> list[str]:
    """A unique, harmless relative file name (``ram/….bin``) for each block, in order.

    ``/rom@etc/acpi/tables`` becomes ``ram/rom_etc_acpi_tables.bin``;
    ``../../x`` becomes ``ram/x.bin``; NUL bytes, absolute paths and
    over-long names cannot survive; names equal after this get ``~2``, ``~3``.
    """
    used: set[str] = set()
    out = []
    for b in blocks:
        base = _UNSAFE.sub("_", b.name).strip("._-")[:_MAX_NAME] or "block"
        name, k = base, 1
        while name.lower() in used:
            k += 1
            name = f"{base}~{k}"
        used.add(name.lower())
        out.append(f"ram/{name}.bin")
    return out


def extract(
    source: str | os.PathLike[str] | bytes | Stream,
    directory: str | os.PathLike[str],
    *,
    schema: str | os.PathLike[str] | SchemaIndex | None = None,
    progress: Progress | None = None,
) -> ExtractResult:
    """Write the stream's RAM blocks and decoded state under ``directory``.

    Args:
        source: a stream file or its bytes, or a loaded stream (e.g. from a
            container: :func:`miglab.load`).
        directory: created if missing; nothing is written outside it.
        schema: a ``-dump-vmstate`` JSON for streams without vmdesc.
        progress: told how far reading the stream and then writing its pages are
            (:mod:`miglab.stream.progress`).

    Raises:
        MigrationFormatError: the stream does not load.
        LimitExceeded: the stream would make more output than its size allows
            (:class:`miglab.limits.OutputBudget`); nothing is left in ``directory``.
        FileError: a file cannot be written (a full disk, a symlinked directory).
    """
    stream = (
        source if isinstance(source, Stream) else load(source, schema=schema, progress=progress)
    )
    out = Path(directory)
    result = ExtractResult(out)
    blocks = stream.ram.blocks
    names = safe_names(blocks)
    with output_directory(out, input_bytes=stream.source_size or None) as top:
        ram = top.subdir("ram")
        files = []
        for b, name in zip(blocks, names, strict=True):
            f = ram.new_file(name.removeprefix("ram/"))
            f.truncate(b.used_length)  # a hole: nothing written, nothing charged
            files.append(f)
            result.files[name] = b.name
        _write_pages(
            stream.sections, blocks, files, stream.page_size, result, progress, stream.source_size
        )
        listing = {
            name: {"block": b.name, "used_length": b.used_length, "addr": b.addr}
            for name, b in zip(names, blocks, strict=True)
        }
        for fname, text in (
            ("blocks.json", json.dumps(listing, indent=1) + "\n"),
            ("state.json", dumps(stream_to_jsonable(stream)) + "\n"),
        ):
            top.new_file(fname).write(text.encode("utf-8", "surrogateescape"))
        top.commit()
    return result


def _write_pages(
    sections: list[Any],
    blocks: list[RamBlock],
    files: list[OutputFile],
    page: int,
    result: ExtractResult,
    progress: Progress | None,
    total: int,
) -> None:
    ram = [s for s in sections if isinstance(s.payload, RamPayload)]
    # One bit a page, not one per record: memory stays flat in the guest's size.
    written = [bytearray(b.used_length // page // 8 + 1) for b in blocks]
    mask = page - 1
    for s in ram:
        p = s.payload
        for bi, word, at, data in p.page_records():
            off, fl = word & ~mask, word & mask
            if bi < 0 or off + page > blocks[bi].used_length:
                result.skipped.append(f"page at 0x{off:x} lies outside block {bi}")
                continue
            out, n = files[bi], off // page
            seen, bit = written[bi], 1 << (n & 7)
            kind = fl & ~RamFlag.CONTINUE
            if kind == RamFlag.ZERO:
                result.zero_pages += 1
                fill = data[0]
                if fill or seen[n >> 3] & bit:
                    out.charge(page)  # before building the page
                    os.pwrite(out.fileno(), bytes([fill]) * page, off)
                    seen[n >> 3] = seen[n >> 3] | bit if fill else seen[n >> 3] & ~bit
                continue
            if kind == RamFlag.PAGE:
                out.pwrite(data, off)
            elif kind == RamFlag.XBZRLE:
                out.charge(page)  # before reading the page
                cur = bytearray(os.pread(out.fileno(), page, off))
                xbzrle_apply(cur, data[3:], at + 3)
                os.pwrite(out.fileno(), cur, off)
            elif kind == RamFlag.COMPRESS_PAGE:
                out.charge(page)  # before inflating the page
                inflate = zlib.decompressobj()
                try:
                    raw = inflate.decompress(bytes(data[4:]), page)
                except zlib.error as exc:
                    result.skipped.append(f"compressed page at 0x{off:x}: {exc}")
                    continue
                os.pwrite(out.fileno(), raw.ljust(page, b"\0"), off)
            seen[n >> 3] |= bit
            result.data_pages += 1
        p.release()
        if progress is not None:
            progress("writing", s.offset + s.size, total)
    if progress is not None:
        progress("writing", total, total)
