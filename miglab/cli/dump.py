"""``miglab dump FILE [--schema DUMP [--schema-hints DUMP]]``: the whole decoded state as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from miglab.cli import add_schema_options, schema_index
from miglab.containers import load
from miglab.stream.jsonview import stream_to_jsonable

__all__ = ("register",)


def register(sub: Any) -> None:
    """Add the ``dump`` subcommand."""
    p = sub.add_parser("dump", help="print the decoded state as JSON")
    p.add_argument("file", help="a migration stream")
    add_schema_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the stream's decoded state."""
    stream = load(args.file, schema=schema_index(args))
    json.dump(stream_to_jsonable(stream), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0
