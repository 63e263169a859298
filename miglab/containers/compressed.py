"""Compressed streams: ``.gz``, ``.bz2``, ``.xz``, ``.zst`` and ``.lzo`` files.

A stream compressed whole, by hand or by libvirt's ``save_image_format``
(:mod:`miglab.containers.libvirt` reuses :func:`expand` and :func:`compress`).
Both directions run the same external programs libvirt runs (``gzip``,
``bzip2``, ``xz``, ``lzop``, ``zstd``; ``-dc`` to read, ``-c`` to write), so
a re-compressed stream is what libvirt itself would have written.

Memory stays bounded: the program's output is read in 1 MiB chunks into an
unlinked scratch file that is then memory-mapped, and the expansion is
stopped (:class:`~miglab.errors.LimitExceeded`) once it passes
``LIMITS.max_decompressed_bytes`` or ``LIMITS.max_expansion_ratio`` times
the compressed size.  Writing an unedited stream back copies the original
compressed bytes, so the output is byte-exact; an edited one is compressed
anew.  Output goes through :mod:`miglab.files`: the plain stream is staged in
a scratch file and the program's output is copied into the output file in
1 MiB chunks, both charged to the output's budget (the program never writes
to the user's file itself).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from miglab.containers._files import (
    copy_file,
    require_program,
    scratch_file,
    scratch_view,
)
from miglab.errors import LimitExceeded, MiglabError, MigrationFormatError, TruncatedStreamError
from miglab.files import staging_file
from miglab.limits import LIMITS

if TYPE_CHECKING:
    from miglab.stream.model import Stream
    from miglab.stream.progress import Progress

__all__ = ("CODECS", "Compressed", "compress", "expand", "sniff")

#: Codec name -> (magic bytes at offset 0, external program).
CODECS: dict[str, tuple[bytes, str]] = {
    "gzip": (b"\x1f\x8b", "gzip"),
    "bzip2": (b"BZh", "bzip2"),
    "xz": (b"\xfd7zXZ\x00", "xz"),
    "lzop": (b"\x89LZO\x00\r\n\x1a\n", "lzop"),
    "zstd": (b"\x28\xb5\x2f\xfd", "zstd"),
}
_CHUNK = 1 << 20
_RATIO_SLACK = 64 << 20
_TRUNCATED_WORDS = ("unexpected end", "truncated", "premature", "incomplete", "short read")


def sniff(view: memoryview) -> str | None:
    """The codec whose magic ``view`` starts with, or None."""
    head = bytes(view[:16])
    for name, (magic, _) in CODECS.items():
        if head.startswith(magic):
            return name
    return None


@dataclass(frozen=True, slots=True)
class Expanded:
    """A decompressed stream and what is needed to write it back unchanged.

    Attributes:
        view: the decompressed bytes (a map of a scratch file).
        digest: SHA-256 of ``view``.
    """

    view: memoryview
    digest: bytes


def expand(
    codec: str, data: memoryview, *, offset: int = 0, progress: Progress | None = None
) -> Expanded:
    """Decompress ``data`` (the whole compressed input) with ``codec``'s program.

    Args:
        codec: a :data:`CODECS` name.
        data: the compressed bytes.
        offset: where ``data`` starts in the user's file (for error offsets).
        progress: told how much of ``data`` the program has read (phase
            ``"decompressing"``, :mod:`miglab.stream.progress`).

    Raises:
        TruncatedStreamError: the compressed data ends early.
        MigrationFormatError: it is corrupt (the program's message is quoted).
        LimitExceeded: it expands past the limits (a decompression bomb).
    """
    program = require_program(CODECS[codec][1], f"reading a {codec} stream")
    limit = min(
        LIMITS.max_decompressed_bytes, LIMITS.max_expansion_ratio * len(data) + _RATIO_SLACK
    )
    digest = hashlib.sha256()
    # ``out`` may be closed once mapped: the map keeps the unlinked file alive.
    with scratch_file() as out, scratch_file() as src, tempfile.TemporaryFile() as err:
        copy_file(data, src)
        src.seek(0)
        proc = subprocess.Popen([program, "-dc"], stdin=src, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        total = 0
        try:
            while chunk := proc.stdout.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    proc.kill()
                    raise LimitExceeded(
                        f"{codec} data of {len(data)} bytes expands past {limit} bytes "
                        "(LIMITS.max_decompressed_bytes / max_expansion_ratio)",
                        offset=offset,
                    )
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    # The program reads ``src`` through the same open file: its offset is
                    # how far the program is.
                    progress("decompressing", os.lseek(src.fileno(), 0, os.SEEK_CUR), len(data))
        finally:
            proc.stdout.close()
            status = proc.wait()
        if status != 0:
            err.seek(0)
            text = err.read(500).decode("utf-8", "replace").strip().replace("\n", " ")
            cls = (
                TruncatedStreamError
                if any(w in text.lower() for w in _TRUNCATED_WORDS)
                else MigrationFormatError
            )
            raise cls(f"{codec} data is not valid ({program} -dc: {text})", offset=offset)
        if progress is not None:
            progress("decompressing", len(data), len(data))
        return Expanded(scratch_view(out), digest.digest())


def compress(codec: str, data: IO[bytes], out: IO[bytes]) -> None:
    """Compress the file ``data`` (from its start) into ``out`` with ``codec``'s program.

    The program's output is read back and written with ``out.write`` (charged
    to the budget of an :class:`~miglab.files.OutputFile`), chunk by chunk.

    Raises:
        MiglabError: the program failed (its message is quoted).
        LimitExceeded: more output than the output's budget allows.
    """
    program = require_program(CODECS[codec][1], f"writing a {codec} stream")
    data.seek(0)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([program, "-c"], stdin=data, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read(_CHUNK):
                out.write(chunk)
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            status = proc.wait()
        if status != 0:
            err.seek(0)
            text = err.read(2000).decode("utf-8", "replace").strip()
            raise MiglabError(
                f"compressing with {codec}: {program} -c exited with {status}: {text}"
            )


def write_compressed(
    codec: str,
    stream: Stream,
    inner: Any,
    original: memoryview,
    digest: bytes,
    out: IO[bytes],
) -> None:
    """Write ``stream`` compressed: the original bytes if it re-encodes unchanged."""
    from miglab.containers import write_to

    with staging_file(out) as plain:
        write_to(stream, plain, inner)
        plain.seek(0)
        h = hashlib.sha256()
        while chunk := plain.read(_CHUNK):
            h.update(chunk)
        if h.digest() == digest:
            copy_file(original, out)
        else:
            compress(codec, plain, out)


@dataclass(eq=False, slots=True)
class Compressed:
    """A stream that came compressed whole.

    Attributes:
        codec: ``gzip``, ``bzip2``, ``xz``, ``lzop`` or ``zstd``.
        inner: the container of the decompressed stream (None: a bare stream).
        original: the compressed input, written back as is when unedited.
        digest: SHA-256 of the decompressed input.
    """

    codec: str
    inner: Any = None
    original: memoryview = field(default=memoryview(b""), repr=False)
    digest: bytes = field(default=b"", repr=False)

    @property
    def name(self) -> str:
        """The container chain, outermost first (``gzip``, ``zstd+mapped-ram``)."""
        return self.codec if self.inner is None else f"{self.codec}+{self.inner.name}"

    def write_to(self, stream: Stream, out: IO[bytes]) -> None:
        """Write ``stream`` compressed with the same codec."""
        write_compressed(self.codec, stream, self.inner, self.original, self.digest, out)


def load(
    view: memoryview, codec: str, load_inner: Any, *, progress: Progress | None = None
) -> Stream:
    """Decompress ``view`` and read the stream inside (``load_inner(view)``); ``progress``
    as for :func:`expand`."""
    expanded = expand(codec, view, progress=progress)
    try:
        stream: Stream = load_inner(expanded.view)
    except MigrationFormatError as exc:
        raise type(exc)(
            f"in the {codec}-decompressed stream: {exc.message}", offset=exc.offset, path=exc.path
        ) from None
    stream.container = Compressed(codec, stream.container, view, expanded.digest)
    return stream
