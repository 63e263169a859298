"""Unpack a stream into a directory: RAM blocks as sparse files, state as JSON.

``extract(stream_file, out_dir)`` writes

* ``ram/<safe name>.bin``: each RAM block, ``used_length`` bytes, holes where
  only zero pages were sent (the file is truncated to size first, and a zero
  page is only written when it replaces data sent earlier);
* ``blocks.json``: safe file name -> block name, length and address;
* ``state.json``: the decoded state (:func:`~miglab.stream.jsonview.stream_to_jsonable`).

Block names come from the stream, so they are never used as paths: every
name is reduced to ``[A-Za-z0-9._-]``, capped in length, made unique.  No
file is written through an entry found in ``out_dir``: ``out_dir`` and
``ram/`` are opened with ``O_DIRECTORY | O_NOFOLLOW``, every file is made
new (``O_CREAT | O_EXCL | O_NOFOLLOW``) under a temporary name beside its
final one and renamed over it when complete, so a symlink or hard link
planted as ``state.json``, ``blocks.json`` or ``ram/*.bin`` is replaced,
and the file it points to is left as it was.  XBZRLE pages are applied to
the page as extracted so far (QEMU's xbzrle_decode_buffer); zlib-compressed
pages (``COMPRESS_PAGE``) are inflated, bounded to one page.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from miglab.errors import FileError
from miglab.stream.constants import RamFlag
from miglab.stream.jsonview import dumps, stream_to_jsonable
from miglab.stream.model import Stream
from miglab.stream.ram import RamBlock, RamPayload
from miglab.stream.reader import load
from miglab.stream.xbzrle import xbzrle_decode as xbzrle_apply

if TYPE_CHECKING:
    from miglab.vmstate.from_schema import SchemaIndex

__all__ = ("ExtractResult", "extract", "safe_names", "xbzrle_apply")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 96
_PAGE_FLAGS = int(RamFlag.ZERO | RamFlag.PAGE | RamFlag.COMPRESS_PAGE | RamFlag.XBZRLE)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


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
    progress: bool | None = None,
) -> ExtractResult:
    """Write the stream's RAM blocks and decoded state under ``directory``.

    Args:
        source: a stream file or its bytes, or a loaded stream (e.g. from a
            container: :func:`miglab.load`).
        directory: created if missing; nothing is written outside it.
        schema: a ``-dump-vmstate`` JSON for streams without vmdesc.
        progress: show a tqdm bar (default: when stderr is a terminal).

    Raises:
        MigrationFormatError: the stream does not load.
    """
    stream = source if isinstance(source, Stream) else load(source, schema=schema)
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileError(
            f"cannot make the directory: {exc.strerror}", path=str(out), errno=exc.errno
        ) from None
    result = ExtractResult(out)
    blocks = stream.ram.blocks
    names = safe_names(blocks)
    out_fd = _open_dir(out)
    fds: list[int] = []
    done: list[_NewFile] = []
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir("ram", 0o755, dir_fd=out_fd)
        ram_fd = _open_dir(out / "ram", out_fd)
        try:
            for b, name in zip(blocks, names, strict=True):
                new = _NewFile(ram_fd, name.removeprefix("ram/"))
                done.append(new)
                fds.append(new.fd)
                os.ftruncate(new.fd, b.used_length)
                result.files[name] = b.name
            _write_pages(stream.sections, blocks, fds, stream.page_size, result, progress)
            listing = {
                name: {"block": b.name, "used_length": b.used_length, "addr": b.addr}
                for name, b in zip(names, blocks, strict=True)
            }
            for fname, text in (
                ("blocks.json", json.dumps(listing, indent=1) + "\n"),
                ("state.json", dumps(stream_to_jsonable(stream)) + "\n"),
            ):
                new = _NewFile(out_fd, fname)
                done.append(new)
                with os.fdopen(os.dup(new.fd), "w", encoding="utf-8") as fh:
                    fh.write(text)
            for new in done:
                new.commit()
        except OSError as exc:  # a full disk, a block too large for the file system
            raise FileError(
                f"cannot write: {exc.strerror or exc}", path=str(out), errno=exc.errno
            ) from None
        finally:
            for new in done:
                new.discard()
            os.close(ram_fd)
    finally:
        os.close(out_fd)
    return result


def _open_dir(path: Path, parent: int | None = None) -> int:
    """Directory ``path`` (its last part, relative to ``parent`` if given), not followed if a symlink."""
    flags = os.O_RDONLY | _DIRECTORY | _NOFOLLOW
    try:
        return os.open(path.name if parent is not None else path, flags, dir_fd=parent)
    except OSError as exc:
        raise FileError(
            f"cannot write into this directory: {exc.strerror}", path=str(path), errno=exc.errno
        ) from None


class _NewFile:
    """A file written under a fresh temporary name in a directory, renamed into place on commit.

    The temporary name is created with ``O_EXCL | O_NOFOLLOW``, so nothing that
    already exists is written through; the rename replaces whatever entry had
    the final name (a file, a symlink, a hard link) without touching its target.
    """

    def __init__(self, dir_fd: int, name: str) -> None:
        self.dir_fd, self.name = dir_fd, name
        self.tmp = f".{name}.{os.getpid()}.tmp"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        self.fd = os.open(self.tmp, flags, 0o644, dir_fd=dir_fd)
        self.pending = True

    def commit(self) -> None:
        """Close the file and give it its final name."""
        if self.pending:
            self.pending = False
            os.close(self.fd)
            os.replace(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)

    def discard(self) -> None:
        """Close and remove the temporary file unless it was committed."""
        if self.pending:
            self.pending = False
            os.close(self.fd)
            os.unlink(self.tmp, dir_fd=self.dir_fd)


def _write_pages(
    sections: list[Any],
    blocks: list[RamBlock],
    fds: list[int],
    page: int,
    result: ExtractResult,
    progress: bool | None,
) -> None:
    chunks = [s.payload for s in sections if isinstance(s.payload, RamPayload)]
    total = sum(len(p) for p in chunks)
    show = sys.stderr.isatty() if progress is None else progress
    from tqdm import tqdm

    bar = tqdm(total=total, unit="rec", desc="extract", disable=not show or total < 4096)
    written = [np.zeros(b.used_length // page + 1, dtype=bool) for b in blocks]
    zero = bytes(page)
    try:
        for p in chunks:
            flags = p.flags.tolist()
            offsets = p.offsets.tolist()
            block = p.block.tolist()
            for i, fl in enumerate(flags):
                if not fl & _PAGE_FLAGS:
                    continue
                bi, off = block[i], offsets[i]
                if bi < 0 or off + page > blocks[bi].used_length:
                    result.skipped.append(f"page at 0x{off:x} lies outside block {bi}")
                    continue
                fd, n = fds[bi], off // page
                kind = fl & ~RamFlag.CONTINUE
                data = p.payload(i)
                if kind == RamFlag.ZERO:
                    result.zero_pages += 1
                    fill = data[0]
                    if fill or written[bi][n]:
                        os.pwrite(fd, bytes([fill]) * page if fill else zero, off)
                        written[bi][n] = bool(fill)
                    continue
                if kind == RamFlag.PAGE:
                    os.pwrite(fd, data, off)
                elif kind == RamFlag.XBZRLE:
                    cur = bytearray(os.pread(fd, page, off))
                    xbzrle_apply(cur, data[3:], int(p.pos[i]) + 3)
                    os.pwrite(fd, cur, off)
                elif kind == RamFlag.COMPRESS_PAGE:
                    inflate = zlib.decompressobj()
                    try:
                        raw = inflate.decompress(bytes(data[4:]), page)
                    except zlib.error as exc:
                        result.skipped.append(f"compressed page at 0x{off:x}: {exc}")
                        continue
                    os.pwrite(fd, raw.ljust(page, b"\0"), off)
                written[bi][n] = True
                result.data_pages += 1
            p.release()
            bar.update(len(flags))
    finally:
        bar.close()
