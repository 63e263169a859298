"""pandas tables of a stream: its records, its leaf fields, its RAM blocks.

Built on the object tree, never on raw bytes (DESIGN.md).  Offsets and
sizes of fields come from the sizing visitor on the one walk
(:class:`~miglab.vmstate.sizing.SizingVisitor`): a field's wire size follows
from its description and value, so no second pass over the input is needed.

Each table is first built as plain columns (``*_columns``: column name ->
list or numpy array), which the ``*_frame`` functions wrap in a
:class:`pandas.DataFrame`.  The fleet index (:mod:`miglab.fleet.rows`) turns
the columns into Arrow tables directly: pandas is imported on the first
frame only, so a fleet worker never loads it.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

from miglab.stream.model import Section, Stream
from miglab.stream.pages import block_totals
from miglab.vmstate.layout import paused_gc
from miglab.vmstate.sizing import SizingVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

if TYPE_CHECKING:
    import pandas as pd

__all__ = (
    "FIELD_COLUMNS",
    "RAM_COLUMNS",
    "SECTION_COLUMNS",
    "field_columns",
    "fields_frame",
    "ram_columns",
    "ram_frame",
    "section_columns",
    "sections_frame",
)

SECTION_COLUMNS = (
    "kind",
    "section_id",
    "name",
    "instance_id",
    "version_id",
    "offset",
    "size",
    "decoded",
)
FIELD_COLUMNS = ("section", "instance_id", "path", "type", "size", "value", "offset")
RAM_COLUMNS = ("block", "used_length", "pages", "zero_pages", "data_pages", "bytes")
_INFO = attrgetter("info")


def section_columns(stream: Stream) -> dict[str, list[Any]]:
    """The SECTION_COLUMNS of every record (sections and commands), in stream order.

    Commands have None for ``section_id``, ``instance_id`` and ``version_id``.
    """
    rows: list[tuple[Any, ...]] = []
    for rec in stream.records:
        if isinstance(rec, Section):
            rows.append(
                (
                    rec.kind.value,
                    rec.section_id,
                    rec.name,
                    rec.instance_id,
                    rec.version_id,
                    rec.offset,
                    rec.size,
                    rec.decoded,
                )
            )
        else:
            rows.append(("command", None, rec.name, None, None, rec.offset, rec.size, True))
    columns = zip(*rows, strict=True) if rows else [()] * len(SECTION_COLUMNS)
    return {name: list(col) for name, col in zip(SECTION_COLUMNS, columns, strict=True)}


def sections_frame(stream: Stream) -> pd.DataFrame:
    """A row per record (sections and commands) with the SECTION_COLUMNS."""
    import pandas as pd

    df = pd.DataFrame(section_columns(stream), columns=list(SECTION_COLUMNS))
    for col in ("section_id", "instance_id", "version_id"):
        df[col] = df[col].astype("Int64")
    return df


def header_size(section: Section) -> int:
    """Bytes of a section's header (type byte to the start of its payload)."""
    if section.kind.has_full_header:
        return 1 + 4 + 1 + len(section.name.encode("utf-8", "surrogateescape")) + 4 + 4
    return 1 + 4


def field_columns(stream: Stream) -> dict[str, list[Any]]:
    """The FIELD_COLUMNS of every leaf field of every decoded device section.

    See :func:`fields_frame` for what the columns hold; ``value`` is the
    field's value as decoded (int, bool, float, str, bytes, None or a list).
    """
    sections: list[str] = []
    instances: list[int] = []
    leaves: list[tuple[Any, ...]] = []
    with paused_gc():  # many small tuples, no cycles: no collection midway
        for rec in stream.records:
            if isinstance(rec, Section) and isinstance(rec.payload, VMState):
                start = rec.offset if rec.offset >= 0 else 0
                v = SizingVisitor(start + header_size(rec))
                v.leaves = leaves  # every section's leaves in one list
                before = len(leaves)
                visit_vmstate(v, rec.payload.desc, rec.payload)
                sections += [rec.name] * (len(leaves) - before)
                instances += [rec.instance_id] * (len(leaves) - before)
        if not leaves:
            return {name: [] for name in FIELD_COLUMNS}
        paths, fields, values, sizes, offsets = map(list, zip(*leaves, strict=True))
        # Freed before the collector is back on, so the collection that
        # follows has a few columns to scan, not a tuple per leaf.
        leaves.clear()
    return {
        "section": sections,
        "instance_id": instances,
        "path": paths,
        "type": list(map(_INFO, fields)),
        "size": sizes,
        "value": values,
        "offset": offsets,
    }


def fields_frame(stream: Stream) -> pd.DataFrame:
    """A row per leaf field of every decoded device section.

    Columns: section (idstr), instance_id, path (``parent_obj.config``,
    ``fw_cfg/dma.dma_addr``), type (VMStateInfo name), size (bytes on the
    wire), value, offset (input offset of the field's first byte, or the
    position it would have in the re-written stream).
    """
    import pandas as pd

    columns = field_columns(stream)
    if not columns["path"]:
        return pd.DataFrame([], columns=list(FIELD_COLUMNS))
    return pd.DataFrame(columns)


def ram_columns(stream: Stream) -> dict[str, Any]:
    """The RAM_COLUMNS of every RAM block: ``block`` and ``used_length`` as lists,
    the counts as int64 numpy arrays (see :func:`ram_frame`)."""
    totals = block_totals(stream)
    pages, zeros = totals["pages"], totals["final_zero_pages"]
    return {
        "block": [b.name for b in stream.ram.blocks],
        "used_length": [b.used_length for b in stream.ram.blocks],
        "pages": pages,
        "zero_pages": zeros,
        "data_pages": pages - zeros,
        "bytes": totals["bytes"],
    }


def ram_frame(stream: Stream) -> pd.DataFrame:
    """A row per RAM block: used_length, pages, zero_pages, data_pages, bytes on the wire.

    Page counts are of the final content (a page re-sent by a later pass counts
    once, as what its last record made it, as in :class:`~miglab.stream.pages.RamPages`),
    counted by :func:`~miglab.stream.pages.block_totals` without a per-record
    index; ``bytes`` counts every record of the block, all passes.
    """
    import pandas as pd

    return pd.DataFrame(ram_columns(stream))
