"""``miglab extract FILE -o DIR [--schema DUMP [--schema-hints DUMP]] [--no-progress]``: RAM as sparse files, state as JSON."""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli import add_schema_options, schema_index

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``extract`` subcommand."""
    p = sub.add_parser("extract", help="write RAM blocks (sparse files) and the state (JSON)")
    p.add_argument("file", help="a migration stream")
    p.add_argument("-o", "--output", required=True, help="output directory (created)")
    add_schema_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Extract and print one line per block file."""
    from miglab.stream.extract import extract

    result = extract(
        args.file,
        args.output,
        schema=schema_index(args),
        progress=False if args.no_progress else None,
    )
    for name, block in result.files.items():
        print(f"{name}\t{block}")
    print(
        f"{args.output}: {len(result.files)} block(s), {result.data_pages} data page(s), "
        f"{result.zero_pages} zero page(s), state.json, blocks.json"
    )
    for msg in result.skipped:
        print(f"skipped: {msg}")
    return 1 if result.skipped else 0
