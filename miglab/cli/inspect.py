"""``miglab inspect FILE [--schema DUMP [--schema-hints DUMP]] [--snapshot NAME] [--json]``.

Prints the container the stream came in (``bare``, ``gzip``, ``libvirt-xz``,
``mapped-ram``, ``qcow2-snapshot``...), the machine and a table of records.

The table has the columns of :func:`miglab.analysis.frames.sections_frame`
(``SECTION_COLUMNS``), laid out as pandas prints that frame, but built
without pandas: a command that reads one stream should not pay pandas'
start-up (a few hundred milliseconds) to print forty rows.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from miglab.cli import add_schema_options, schema_index

if TYPE_CHECKING:
    from miglab.stream.model import Stream

__all__ = ("record_rows", "register")

# The columns of miglab.analysis.frames.SECTION_COLUMNS (tests/test_cli_startup.py
# checks that they stay the same).
COLUMNS = ("kind", "section_id", "name", "instance_id", "version_id", "offset", "size", "decoded")


def register(sub: Any) -> None:
    """Add the ``inspect`` subcommand."""
    p = sub.add_parser("inspect", help="show the machine and the stream's records")
    p.add_argument("file", help="a migration stream")
    add_schema_options(p)
    p.add_argument("--snapshot", help="for a qcow2 image: the snapshot (id or name) to read")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def record_rows(stream: Stream) -> list[dict[str, Any]]:
    """One row per record with the :data:`COLUMNS` (None where a command has no value)."""
    from miglab.stream.model import Section

    rows: list[dict[str, Any]] = []
    for rec in stream.records:
        if isinstance(rec, Section):
            values: tuple[Any, ...] = (
                rec.kind.value,
                rec.section_id,
                rec.name,
                rec.instance_id,
                rec.version_id,
                rec.offset,
                rec.size,
                rec.decoded,
            )
        else:
            values = ("command", None, rec.name, None, None, rec.offset, rec.size, True)
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the machine and one row per record."""
    import json

    from miglab.containers import container_name, load

    stream = load(args.file, schema=schema_index(args), snapshot=args.snapshot)
    container = container_name(stream)
    rows = record_rows(stream)
    if args.json:
        print(json.dumps({"container": container, "machine": stream.machine, "sections": rows}))
        return 0
    print(f"container: {container}")
    print(f"machine: {stream.machine or '(no configuration block)'}")
    print(_table(rows))
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    """Right-justified columns under their names, as pandas' ``to_string(index=False)``.

    A column is as wide as its widest value, but at least one wider than its
    name (a text column only when the name is the wider); columns are one
    space apart.
    """
    values = [["<NA>" if v is None else str(v) for v in r.values()] for r in rows]
    widths = []
    for i, name in enumerate(COLUMNS):
        widest = max((len(row[i]) for row in values), default=0)
        text = name in ("kind", "name")
        widths.append(
            widest if widest > len(name) or (text and widest == len(name)) else len(name) + 1
        )
    lines = [list(COLUMNS), *values]
    return "\n".join(
        " ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in lines
    )
