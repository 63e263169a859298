"""qcow2 internal snapshots: the VM state ``savevm`` writes into a disk image.

``miglab.load("disk.qcow2", snapshot="NAME")`` reads the VM state of one
snapshot (listed by :func:`snapshots`) through that snapshot's own L1 table
(:mod:`miglab.containers.qcow2_format`) into a scratch file, and reads the
stream in it.  ``miglab.save(stream, "new.qcow2")`` writes the image again
with that snapshot's VM state replaced (:mod:`miglab.containers.qcow2_write`):
a new file by default, the image itself only with ``in_place=True`` (and
then atomically, through a temporary copy), so that ``-loadvm NAME`` loads
the new state and ``qemu-img check`` finds nothing to repair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miglab.containers._files import drop_pages, scratch_file, scratch_view
from miglab.containers.qcow2_format import (
    MAGIC,
    Header,
    Snapshot,
    check_refcount_blocks,
    read_header,
    read_snapshots,
    vm_state_clusters,
)
from miglab.errors import MiglabError, MigrationFormatError
from miglab.stream.reader import open_source

if TYPE_CHECKING:
    from miglab.stream.model import Stream

__all__ = ("Qcow2Snapshot", "Snapshot", "snapshots", "sniff")


def sniff(view: memoryview) -> bool:
    """Whether ``view`` is a qcow2 image."""
    return bytes(view[:4]) == MAGIC


def snapshots(source: str | os.PathLike[str] | bytes | memoryview) -> list[Snapshot]:
    """The internal snapshots of a qcow2 image, in table order."""
    view = open_source(source)
    return read_snapshots(view, read_header(view))


@dataclass(eq=False, slots=True)
class Qcow2Snapshot:
    """A stream that came from a qcow2 snapshot's VM state.

    Attributes:
        snapshot: the snapshot entry it was read from.
        header: the image's header.
        image: the whole image as read (the base of a written copy).
        source: the image's path, when it was read from one.
    """

    snapshot: Snapshot
    header: Header
    image: memoryview = field(repr=False)
    source: Path | None = None
    name: str = "qcow2-snapshot"

    def save_as(self, stream: Stream, path: Path, *, in_place: bool = False) -> None:
        """Write the image with this snapshot's VM state replaced by ``stream``."""
        from miglab.containers.qcow2_write import write_image

        write_image(self, stream, path, in_place=in_place)

    def write_to(self, stream: Stream, out: Any) -> None:
        """A qcow2 image is written whole, to a path (:meth:`save_as`)."""
        raise MiglabError("a qcow2 snapshot is written with miglab.save(stream, path)")


def load(
    view: memoryview, load_inner: Any, *, snapshot: str | None = None, source: Path | None = None
) -> Stream:
    """Read the VM state of ``snapshot`` (id or name) and the stream in it."""
    h = read_header(view)
    check_refcount_blocks(view, h)
    table = read_snapshots(view, h)
    snap = _choose(table, snapshot)
    cs = h.cluster_size
    clusters = vm_state_clusters(view, h, snap)  # checks the size before anything is made
    with scratch_file() as scratch:  # the map keeps the unlinked file alive
        scratch.truncate(snap.vm_state_size)
        fd = scratch.fileno()
        for guest, host in clusters:
            size = min(cs, snap.vm_state_size - guest)
            os.pwrite(fd, view[host : host + size], guest)
            drop_pages(view, host, host + size)
        state = scratch_view(scratch)
    try:
        stream: Stream = load_inner(state)
    except MigrationFormatError as exc:
        raise type(exc)(
            f"in the VM state of qcow2 snapshot {snap.name!r}: {exc.message}",
            offset=exc.offset,
            path=exc.path,
        ) from None
    stream.container = Qcow2Snapshot(snap, h, view, source)
    return stream


def _choose(table: list[Snapshot], wanted: str | None) -> Snapshot:
    with_state = [s for s in table if s.vm_state_size]
    if wanted is None:
        if len(with_state) == 1:
            return with_state[0]
        names = ", ".join(s.name for s in with_state) or "none"
        raise MiglabError(f"pass snapshot=NAME: the image has VM state in snapshots: {names}")
    for s in table:
        if wanted in (s.name, s.id):
            if not s.vm_state_size:
                raise MiglabError(f"qcow2 snapshot {wanted!r} holds no VM state (disk only)")
            return s
    raise MiglabError(f"qcow2 image has no snapshot {wanted!r}")
