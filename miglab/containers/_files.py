"""File plumbing shared by the containers: scratch files, copies, external programs.

Output the user sees is written by :mod:`miglab.files` (the one safe
writer); what lives here keeps memory bounded: an expanded container
(decompressed data, a VM state gathered from qcow2 clusters) goes to an
unlinked scratch file that is memory-mapped (:func:`scratch_view`), never to
one big ``bytes``.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from typing import IO

from miglab.errors import MiglabError

__all__ = (
    "copy_file",
    "drop_pages",
    "require_program",
    "scratch_file",
    "scratch_view",
)

_COPY_CHUNK = 8 << 20


def scratch_file() -> IO[bytes]:
    """An anonymous read-write temporary file (unlinked: it vanishes when closed)."""
    return tempfile.TemporaryFile(prefix="miglab-")


def scratch_view(fh: IO[bytes]) -> memoryview:
    """A read-only memory map of everything written to the scratch file ``fh``."""
    fh.flush()
    size = os.fstat(fh.fileno()).st_size
    if size == 0:
        return memoryview(b"")
    return memoryview(mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ))


def copy_file(src: memoryview, out: IO[bytes]) -> None:
    """Write a view to ``out`` in chunks (holes in ``src`` are written as zeros).

    A view of a memory-mapped file has the pages it copied dropped from this
    process as it goes (they stay in the page cache), so copying a large
    input does not count it all towards the resident set.
    """
    for at in range(0, len(src), _COPY_CHUNK):
        out.write(src[at : at + _COPY_CHUNK])
        drop_pages(src, at, min(at + _COPY_CHUNK, len(src)))


def drop_pages(view: memoryview, start: int, end: int) -> None:
    """Drop ``view[start:end]`` of a memory-mapped file from this process's resident set.

    The pages stay in the page cache and are read back on use; this keeps a
    pass over a large mapped input from counting it all as our memory.
    Views of anything but an ``mmap`` are left alone.
    """
    mapping = view.obj
    if not isinstance(mapping, mmap.mmap):
        return
    base = _offset_in(mapping, view)
    lo = -(-(base + start) // mmap.PAGESIZE) * mmap.PAGESIZE
    hi = (base + end) // mmap.PAGESIZE * mmap.PAGESIZE
    if hi > lo:
        mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _offset_in(mapping: mmap.mmap, view: memoryview) -> int:
    """Where a view of ``mapping`` starts inside it."""
    import numpy as np

    whole = np.frombuffer(mapping, np.uint8)
    part = np.frombuffer(view, np.uint8)
    return int(part.ctypes.data - whole.ctypes.data)


def require_program(name: str, why: str) -> str:
    """The path of an external program, or a clear error naming what needs it."""
    found = shutil.which(name)
    if found is None:
        raise MiglabError(f"{why} needs the external program {name!r}, which is not installed")
    return found
