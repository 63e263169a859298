"""``miglab inspect FILE [--schema DUMP [--schema-hints DUMP]] [--snapshot NAME] [--json] [--progress]``.

Prints the container the stream came in (``bare``, ``gzip``, ``libvirt-xz``,
``mapped-ram``, ``qcow2-snapshot``...), the machine and a table of records.

The table has the columns of :func:`miglab.analysis.frames.sections_frame`
(``SECTION_COLUMNS``), laid out as pandas prints that frame, but built
without pandas: a command that reads one stream should not pay pandas'
start-up (a few hundred milliseconds) to print forty rows.

Under the table, sections left undecoded are listed with the reader's
reason and the option that would help: a stream without vmdesc trailer
(old machine types write none, a cut stream has lost it) is decoded with
``--schema``, the ``-dump-vmstate`` JSON of the QEMU that wrote it, and
``--schema-hints`` where that dump lacks array lengths.
"""

from __future__ import annotations

import argparse

from miglab.cli import add_schema_options, schema_index
from miglab.cli._progress import add_progress_arguments, byte_progress

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

    from miglab.stream.model import Stream

__all__ = ("record_rows", "register", "undecoded_notes")

# The columns of miglab.analysis.frames.SECTION_COLUMNS (tests/cli/test_cli.py
# checks that they stay the same).
COLUMNS = ("kind", "section_id", "name", "instance_id", "version_id", "offset", "size", "decoded")


def register(sub: Any) -> None:
    """Add the ``inspect`` subcommand."""
    p = sub.add_parser("inspect", help="show the machine and the stream's records")
    p.add_argument("file", help="a migration stream")
    add_schema_options(p)
    p.add_argument("--snapshot", help="for a qcow2 image: the snapshot (id or name) to read")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_progress_arguments(p)
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


def undecoded_notes(stream: Stream, *, schema_given: bool) -> list[str]:
    """Why each undecoded section was not decoded, and the hint that would help.

    One line per section (its offset and the reader's reason), then the hint.
    Empty when every section was decoded.
    """
    from miglab.stream.model import Opaque

    reasons = [
        (s.offset, s.payload.reason) for s in stream.sections if isinstance(s.payload, Opaque)
    ]
    if not reasons:
        return []
    notes = [f"{len(reasons)} section(s) not decoded:"]
    notes += [f"  offset {offset}: {reason}" for offset, reason in reasons]
    no_description = any(r.startswith("no description for") for _, r in reasons)
    if no_description and stream.vmdesc is None and not schema_given:
        notes.append(
            "hint: the stream has no vmdesc trailer; give --schema DUMP, the -dump-vmstate "
            "JSON of the QEMU and machine that wrote it (data/schema-*.json has 5.2, 7.2, "
            "10.0 and 11.1)"
        )
    elif no_description and schema_given:
        notes.append(
            "hint: the schema has no entry for these sections or none of its layouts fits "
            "their bytes; a -dump-vmstate of QEMU before 8.1 gives no array lengths, which "
            "--schema-hints DUMP (a newer QEMU's dump) adds"
        )
    return notes


def run(args: argparse.Namespace) -> int:
    """Print the machine and one row per record."""
    import json

    from miglab.containers import container_name, load

    index = schema_index(args)
    with byte_progress(args, "inspect") as progress:
        stream = load(args.file, schema=index, snapshot=args.snapshot, progress=progress)
    container = container_name(stream)
    rows = record_rows(stream)
    notes = undecoded_notes(stream, schema_given=index is not None)
    if args.json:
        doc = {"container": container, "machine": stream.machine, "sections": rows}
        print(json.dumps({**doc, "notes": notes}))
        return 0
    print(f"container: {container}")
    print(f"machine: {stream.machine or '(no configuration block)'}")
    print(_table(rows))
    for line in notes:
        print(line)
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
