"""``miglab dump FILE [--schema DUMP [--schema-hints DUMP]] [--hex]``: the decoded state as JSON.

Buffers holding a C string (``globalstate/runstate``: ``"prelaunch"``) are
shown as text, other buffers as hex; ``--hex`` shows every buffer as hex.
"""

from __future__ import annotations

import argparse
import sys

from miglab.cli import add_schema_options, schema_index
from miglab.cli._progress import add_progress_arguments, byte_progress

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("register",)


def register(sub: Any) -> None:
    """Add the ``dump`` subcommand."""
    p = sub.add_parser("dump", help="print the decoded state as JSON")
    p.add_argument("file", help="a migration stream")
    add_schema_options(p)
    p.add_argument("--hex", action="store_true", help="show every buffer as hex, strings too")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the stream's decoded state."""
    from miglab.containers import load
    from miglab.stream.jsonview import dumps, stream_to_jsonable

    with byte_progress(args, "dump") as progress:
        stream = load(args.file, schema=schema_index(args), progress=progress)
    sys.stdout.write(
        dumps(stream_to_jsonable(stream, text=not args.hex)) + "\n"
    )  # one write, not one per token
    return 0
