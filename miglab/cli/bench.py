"""``miglab bench [--json] [FILES...]``: bytes and MB/s of every wire format.

Measures :func:`miglab.encoders.bench.measure` on the given streams (default:
every ``*.mig`` in ``./data``), optionally with a synthetic big stream, and
prints the per-format summary (or, with ``--json``, every row as JSON).
``--chart out.png`` saves the figure.  A run over data/ takes minutes, so a
progress bar on stderr shows it: on a terminal, or with ``--progress`` (e.g. in
a CI log); ``--no-progress`` turns it off (:mod:`miglab.cli._progress`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miglab.cli._progress import add_progress_arguments, progress_enabled
from miglab.errors import MiglabError

if TYPE_CHECKING:
    from miglab.stream.model import Stream

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``bench`` subcommand."""
    p = sub.add_parser("bench", help="compare wire formats by size and speed")
    p.add_argument("files", nargs="*", help="streams to measure (default: data/*.mig)")
    p.add_argument("--json", action="store_true", help="print every row as JSON")
    p.add_argument(
        "--formats", help="comma-separated subset of the formats (default: all; see convert --help)"
    )
    p.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median kept)")
    p.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="MIB",
        help="add a synthetic stream of MIB MiB RAM",
    )
    p.add_argument("--chart", help="save the chart as this PNG")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def synthetic(mib: int, devices_from: Stream | None = None, seed: int = 0) -> Stream:
    """A synthetic stream of ``mib`` MiB RAM (half zero pages), with the devices of ``devices_from``."""
    from miglab.stream.synthetic import synthetic_stream
    from miglab.vmstate.state import VMState

    devices = []
    if devices_from is not None:
        devices = [
            (s.name, s.instance_id, s.payload)
            for s in devices_from.sections
            if isinstance(s.payload, VMState) and s.kind.value == "full"
        ]
    return synthetic_stream(
        ram_bytes=mib << 20,
        mix={"zero": 0.5, "random": 0.25, "repeated": 0.25},
        devices=devices,
        seed=seed,
    )


def run(args: argparse.Namespace) -> int:
    """Measure, print the table, save the chart if asked."""
    import json

    from miglab.encoders.bench import chart, measure, summary
    from miglab.stream.reader import load

    paths = [Path(f) for f in args.files] or sorted(Path("data").glob("*.mig"))
    if not paths and not args.synthetic:
        raise MiglabError("no streams to measure: give FILES or run where data/*.mig exists")
    streams: dict[str, Any] = {p.stem: p for p in paths}
    if args.synthetic:
        base = load(paths[0]) if paths else None
        streams[f"synthetic-{args.synthetic}MiB"] = synthetic(args.synthetic, base)
    formats = args.formats.split(",") if args.formats else None
    df = measure(streams, formats, repeat=args.repeat, progress=progress_enabled(args))
    if args.json:
        json.dump(df.to_dict(orient="records"), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(summary(df).to_string())
    if args.chart:
        chart(df).savefig(args.chart, dpi=120)
    return 0
