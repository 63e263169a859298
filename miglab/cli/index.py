"""``miglab index PATHS... -o DATASET_DIR [--scheduler S] [--workers N]``: a fleet dataset.

Reads every stream file named or found under a named folder into the Parquet tables of
:mod:`miglab.fleet` (in parallel with Dask), skipping files indexed before and unchanged.
Exit status 0 even when some files could not be read: they are rows with their error
(``miglab fleet check`` lists them as ``unreadable``).
"""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli._progress import add_progress_arguments, byte_progress

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``index`` subcommand."""
    p = sub.add_parser(
        "index",
        help="index many streams into a Parquet fleet dataset (Dask)",
        description=(
            "Parse every stream and write DATASET_DIR/{streams,sections,fields,ram,layouts}/, "
            "Parquet datasets hive-partitioned by QEMU release and machine type."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="stream files or folders")
    p.add_argument("-o", "--output", required=True, metavar="DATASET_DIR", help="dataset folder")
    p.add_argument(
        "--scheduler",
        default="processes",
        metavar="processes|threads|synchronous|ADDRESS",
        help="a Dask local scheduler or a distributed scheduler address (default: processes)",
    )
    p.add_argument("--workers", type=int, default=None, metavar="N", help="local workers")
    p.add_argument("--release", default=None, help="QEMU release of files no manifest.json names")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Index and print one summary line."""
    from miglab.fleet.indexing import index

    with byte_progress(args, "index") as progress:
        report = index(
            args.paths,
            args.output,
            scheduler=args.scheduler,
            workers=args.workers,
            release=args.release,
            progress=progress,
        )
    print(
        f"{args.output}: {report.indexed} indexed ({report.errors} unreadable), "
        f"{report.skipped} unchanged, {report.removed} replaced, "
        f"{report.seconds:.1f} s ({report.rate:.1f} files/s)"
    )
    return 0
