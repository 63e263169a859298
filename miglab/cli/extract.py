"""``miglab extract FILE -o DIR [--schema DUMP [--schema-hints DUMP]] [--snapshot NAME] [--progress]``.

Writes RAM as sparse files and the state as JSON, from a stream in any
container (compressed, libvirt save image, qcow2 snapshot, mapped-ram file).
"""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli import add_schema_options, schema_index
from miglab.cli._progress import add_progress_arguments, byte_progress

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``extract`` subcommand."""
    p = sub.add_parser("extract", help="write RAM blocks (sparse files) and the state (JSON)")
    p.add_argument("file", help="a migration stream")
    p.add_argument("-o", "--output", required=True, help="output directory (created)")
    add_schema_options(p)
    p.add_argument("--snapshot", help="for a qcow2 image: the snapshot (id or name) to read")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Extract and print one line per block file."""
    from miglab.containers import load
    from miglab.stream.extract import extract

    with byte_progress(args, "extract") as progress:
        stream = load(
            args.file, schema=schema_index(args), snapshot=args.snapshot, progress=progress
        )
        result = extract(stream, args.output, progress=progress)
    for name, block in result.files.items():
        print(f"{name}\t{block}")
    print(
        f"{args.output}: {len(result.files)} block(s), {result.data_pages} data page(s), "
        f"{result.zero_pages} zero page(s), state.json, blocks.json"
    )
    for msg in result.skipped:
        print(f"skipped: {msg}")
    return 1 if result.skipped else 0
