"""``miglab inspect FILE [--schema DUMP [--schema-hints DUMP]] [--snapshot NAME] [--json]``.

Prints the container the stream came in (``bare``, ``gzip``, ``libvirt-xz``,
``mapped-ram``, ``qcow2-snapshot``...), the machine and a table of records.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from miglab.analysis.frames import SECTION_COLUMNS, sections_frame
from miglab.cli import add_schema_options, schema_index
from miglab.containers import container_name, load

__all__ = ("register",)


def register(sub: Any) -> None:
    """Add the ``inspect`` subcommand."""
    p = sub.add_parser("inspect", help="show the machine and the stream's records")
    p.add_argument("file", help="a migration stream")
    add_schema_options(p)
    p.add_argument("--snapshot", help="for a qcow2 image: the snapshot (id or name) to read")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the machine and one row per record."""
    stream = load(args.file, schema=schema_index(args), snapshot=args.snapshot)
    container = container_name(stream)
    frame = sections_frame(stream)
    if args.json:
        rows = [
            {col: _plain(row[col]) for col in SECTION_COLUMNS}
            for row in frame.to_dict(orient="records")
        ]
        print(json.dumps({"container": container, "machine": stream.machine, "sections": rows}))
        return 0
    print(f"container: {container}")
    print(f"machine: {stream.machine or '(no configuration block)'}")
    print(frame.to_string(index=False))
    return 0


def _plain(value: Any) -> Any:
    """pandas scalars (NA, numpy ints) as JSON-ready Python values."""
    if value is None or value.__class__.__name__ in ("NAType", "NaTType"):
        return None
    return value.item() if hasattr(value, "item") else value
