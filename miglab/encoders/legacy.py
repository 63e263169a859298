"""``legacy``: QEMU's own migration stream, the format real QEMU reads and writes.

A thin facade over :mod:`miglab.stream`: decoding is :func:`miglab.stream.load`,
encoding :meth:`~miglab.stream.model.Stream.to_bytes`, byte-exact for an
unedited tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from miglab.stream.model import Stream
from miglab.stream.reader import load
from miglab.wire import FILE_MAGIC

if TYPE_CHECKING:
    from miglab.stream.progress import Progress

__all__ = ("MAGIC", "NAME", "decode", "encode", "sniff")

NAME = "legacy"
MAGIC = FILE_MAGIC.to_bytes(4, "big")  # b"QEVM"


def encode(stream: Stream) -> bytes:
    """QEMU's stream for ``stream``."""
    return stream.to_bytes()


def decode(data: bytes, *, progress: Progress | None = None) -> Stream:
    """Read QEMU's stream (raises MigrationFormatError on bad input); ``progress`` as for
    :func:`miglab.stream.reader.load`."""
    return load(data, progress=progress)


def sniff(data: bytes) -> bool:
    """True when ``data`` starts with QEMU's file magic."""
    return data[:4] == MAGIC
