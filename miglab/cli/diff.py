"""``miglab diff A B [--schema DUMP] [--schema-b DUMP] [--json]``: what two streams differ in.

Section by section and member by member, buffers byte by byte, PCI config
spaces register by register with the bits that flipped
(:func:`miglab.analysis.diff.diff_streams`).  Either stream may be in any
container :mod:`miglab.containers` reads.  Exit status 0 when the two hold
the same device state and machine type, 1 when they differ (as diff(1)), 2
when one cannot be read.
"""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli import add_schema_options, schema_index
from miglab.cli._progress import add_progress_arguments, byte_progress

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``diff`` subcommand."""
    p = sub.add_parser(
        "diff", help="compare two streams section by section (exit 1 if they differ)"
    )
    p.add_argument("a", help="the first stream (A)")
    p.add_argument("b", help="the second stream (B)")
    add_schema_options(p)
    p.add_argument(
        "--schema-b", metavar="DUMP", help="a -dump-vmstate JSON for B when it differs from A's"
    )
    p.add_argument("--json", action="store_true", help="print the differences as one JSON object")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the differences; 1 if there are any."""
    import json

    from miglab.analysis.diff import diff_streams
    from miglab.containers import load
    from miglab.errors import MiglabError
    from miglab.vmstate.from_schema import SchemaIndex

    index = schema_index(args)
    index_b = SchemaIndex.load(args.schema_b) if args.schema_b else index
    streams = []
    for what, path, schema in (("A", args.a, index), ("B", args.b, index_b)):
        try:
            with byte_progress(args, f"diff {what}") as progress:
                streams.append(load(path, schema=schema, progress=progress))
        except MiglabError as exc:
            raise MiglabError(f"{path}: {exc}") from exc  # which of the two, then where
    diff = diff_streams(*streams)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **diff.to_dict()}))
    else:
        print(f"A: {args.a}\nB: {args.b}")
        print(diff)
    return 1 if diff else 0
