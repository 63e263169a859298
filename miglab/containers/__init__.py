"""Containers: what surrounds a migration stream in the files users have.

Most saved VM state is not a bare ``exec:cat`` stream.  A container module
unwraps one kind of wrapping on load and puts it back on save; none of them
knows anything about devices (DESIGN.md, "Growing it"):

================  ==========================================  ===========================
container         what it is                                  module
================  ==========================================  ===========================
gzip, xz, ...     the stream compressed whole                 :mod:`.compressed`
libvirt-<fmt>     a ``virsh save`` / managedsave image        :mod:`.libvirt`
mapped-ram        a QEMU >= 9.0 ``file:`` migration with      :mod:`.mapped_ram`
                  pages at fixed file offsets
qcow2-snapshot    the VM state of a ``savevm`` snapshot       :mod:`.qcow2`
================  ==========================================  ===========================

:func:`load` detects the container from the first bytes, unwraps it (nested
ones too: a libvirt ``sparse`` image holds a mapped-ram stream) and reads
the stream inside; ``Stream.container`` records what it came in, and
:func:`save` writes the same container back -- byte-exact for an unedited
stream -- to a temporary file that replaces the target only once complete.
``Stream.container = None`` (or :func:`save` with ``container=None``) writes
the bare legacy stream: that is ``miglab convert --to legacy``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from miglab.errors import LimitExceeded
from miglab.limits import LIMITS
from miglab.stream.reader import load as load_bare
from miglab.stream.reader import open_source
from miglab.wire import FILE_MAGIC

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from pathlib import Path  # imported where a path is made: pathlib costs every command
    from typing import IO, Any, BinaryIO

    from miglab.stream.model import Stream
    from miglab.stream.progress import Progress
    from miglab.vmstate.filters import Filters
    from miglab.vmstate.from_schema import SchemaIndex

__all__ = ("container_name", "detect", "load", "save", "write_to")

_KEEP = object()


def detect(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> str:
    """The outermost container of a file or buffer: a name, or ``"bare"``."""
    return _sniff(open_source(source)) or "bare"


def _sniff(view: memoryview) -> str | None:
    # A file that begins as QEMU's own stream is bare or mapped-ram (no other container
    # starts with QEVM); the other containers' modules load only for a file that does not,
    # and mapped-ram's only for one that names the capability where its sniff looks, so
    # reading a bare stream costs none of their imports.
    if int.from_bytes(view[:4], "big") == FILE_MAGIC:
        if b"mapped-ram" not in bytes(view[:512]):
            return None
        from miglab.containers.mapped_ram_format import sniff

        return "mapped-ram" if sniff(view) else None
    from miglab.containers import compressed, libvirt, qcow2

    if libvirt.sniff(view):
        return "libvirt"
    if qcow2.sniff(view):
        return "qcow2"
    return compressed.sniff(view)


def load(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    schema: str | os.PathLike[str] | Mapping[str, Any] | SchemaIndex | None = None,
    snapshot: str | None = None,
    filters: Filters | None = None,
    progress: Progress | None = None,
) -> Stream:
    """Read a stream in any container into the object tree.

    Args:
        source: a path (memory-mapped) or the bytes of a file.
        schema: as for :func:`miglab.stream.load`.
        snapshot: for a qcow2 image, the id or name of the snapshot to read
            (default: the only one, else an error listing them).
        filters: unmarshal filters run on every device state read
            (:mod:`miglab.vmstate.filters`); the vmdesc entries of the states they
            change are rebuilt.
        progress: told how far the reader is through the (unwrapped) stream
            (:mod:`miglab.stream.progress`).

    Raises:
        MigrationFormatError: the container or the stream inside is invalid;
            the message says which, with the byte offset.
    """
    view = open_source(source)
    file = None if isinstance(source, bytes | bytearray | memoryview) else os.fspath(source)

    def load_view(inner: memoryview, depth: int = 0) -> Stream:
        if depth > LIMITS.max_container_depth:
            raise LimitExceeded(
                f"containers nested more than {LIMITS.max_container_depth} deep", offset=0
            )
        kind = _sniff(inner)
        if kind is None:
            return load_bare(inner, schema=schema, progress=progress)
        from miglab.containers import compressed, libvirt, mapped_ram, qcow2

        def deeper(v: memoryview) -> Stream:
            return load_view(v, depth + 1)

        if kind == "libvirt":
            return libvirt.load(inner, deeper)
        if kind == "qcow2":
            from pathlib import Path

            path = Path(file) if file is not None and depth == 0 else None
            return qcow2.load(inner, deeper, snapshot=snapshot, source=path)
        if kind == "mapped-ram":
            return mapped_ram.load(inner, 0, schema=schema)
        return compressed.load(inner, kind, deeper, progress=progress)

    stream = load_view(view)
    if filters:
        from miglab.stream.filtering import filter_stream

        stream = filter_stream(stream, filters, marshal=False)
    return stream


def save(
    stream: Stream,
    path: str | os.PathLike[str],
    *,
    container: Any = _KEEP,
    progress: Progress | None = None,
    **options: Any,
) -> Path:
    """Write ``stream`` to ``path`` in its container (or ``container``), atomically.

    Args:
        stream: the tree to write.
        path: the output file; it is replaced only once the new file is complete.
        container: a container record to write instead of ``stream.container``
            (None: the bare legacy stream).
        progress: told how far the writer is through the stream, for a bare
            stream (:mod:`miglab.stream.progress`).
        options: passed to the container's writer (``in_place=True`` for a
            qcow2 snapshot written back into its own image).
    """
    from pathlib import Path

    chosen = stream.container if container is _KEEP else container
    out = Path(path)
    save_as = getattr(chosen, "save_as", None)
    if save_as is not None:  # containers that write a whole file of their own (qcow2)
        save_as(stream, out, **options)
        return out
    from miglab.files import atomic_output

    with atomic_output(out, input_bytes=stream.source_size or None) as fh:
        write_to(stream, fh, chosen, progress=progress)
    return out


def write_to(
    stream: Stream, out: IO[bytes], container: Any = _KEEP, *, progress: Progress | None = None
) -> None:
    """Write ``stream`` in ``container`` (default: its own) to a seekable binary file;
    ``progress`` is told how far a bare stream's writer is (:mod:`miglab.stream.progress`)."""
    chosen = stream.container if container is _KEEP else container
    if chosen is None:
        from typing import cast  # not at import: reading a stream imports no typing

        from miglab.stream.writer import write_to as write_bare

        write_bare(stream, cast("BinaryIO", out), progress=progress)
    else:
        chosen.write_to(stream, out)


def container_name(stream: Stream) -> str:
    """What ``stream`` came in, as one word (``bare``, ``gzip``, ``libvirt-sparse+mapped-ram``)."""
    return "bare" if stream.container is None else str(stream.container.name)
