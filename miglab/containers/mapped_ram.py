"""mapped-ram files: QEMU >= 9.0 ``file:`` migration with pages at fixed offsets.

The layout (per-block header, bitmap, pages at fixed file offsets, zero pages absent) is
declared in :mod:`~miglab.containers.mapped_ram_format`, read by
:mod:`~miglab.containers.mapped_ram_read` and written by
:mod:`~miglab.containers.mapped_ram_write`; this module is the container.

Reading cuts the page areas out, so the rest is an ordinary stream with the
capability dropped from its configuration block, read by the stream reader;
the set bits of each bitmap become page records in the RAM START section,
whose payloads are views into the file: no page is copied.  The tree is thus
the legacy equivalent of the file (``miglab convert --to legacy`` writes it
as is); :class:`MappedRam` writes any tree -- this one or a sequential
stream's -- back in QEMU's layout, the last copy of each page winning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from miglab.containers.mapped_ram_format import (
    CAPABILITY,
    MappedBlock,
    drop_capability,
    sniff,
)
from miglab.containers.mapped_ram_read import Layout, file_offset
from miglab.containers.mapped_ram_write import write
from miglab.errors import MigrationFormatError
from miglab.stream.model import SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.reader import load as load_bare

__all__ = ("CAPABILITY", "MappedBlock", "MappedRam", "drop_capability", "load", "sniff", "write")


@dataclass(eq=False, slots=True)
class MappedRam:
    """A stream that came as a mapped-ram file.

    Attributes:
        offset: where the stream starts in the file (after a libvirt header).
        blocks: the blocks' places in the file, as read.
    """

    offset: int = 0
    blocks: tuple[MappedBlock, ...] = ()
    name: str = CAPABILITY

    def write_to(self, stream: Stream, out: IO[bytes]) -> None:
        """Write ``stream`` as a mapped-ram file at ``out``'s position."""
        write(stream, out)


# --- reading -------------------------------------------------------------------------------
def load(view: memoryview, start: int = 0, *, schema: Any = None) -> Stream:
    """Read the mapped-ram stream that starts at ``start`` of the file ``view``.

    Raises:
        MigrationFormatError: the layout is invalid; ``offset`` is a file offset.
    """
    layout = Layout(view, start)
    layout.parse()
    residual, pieces = layout.residual()
    try:
        stream = load_bare(residual, schema=schema)
    except MigrationFormatError as exc:
        offset = None if exc.offset is None else file_offset(pieces, exc.offset)
        raise type(exc)(exc.message, offset=offset, path=exc.path) from None
    ram = next(
        (s for s in stream.sections if s.name == "ram" and s.kind is SectionKind.START), None
    )
    if ram is None or not isinstance(ram.payload, RamPayload):
        raise MigrationFormatError("mapped-ram stream has no RAM START section", offset=start)
    ram.payload = layout.with_pages(ram.payload)
    stream.container = MappedRam(start, tuple(layout.blocks))
    stream.source_size = len(view)
    return stream
