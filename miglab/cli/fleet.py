"""``miglab fleet check DATASET_DIR --to-qemu R [--machine M] [--schemas DIR] [--all] [--json]``.

Which VMs of an indexed fleet can move to QEMU ``R`` on machine type ``M``: the static
schema check per stream (:func:`miglab.fleet.check`), printed as a table with a summary
line.  Exit status 1 when some stream of machine ``M`` would break.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ("register", "run_check")


def register(sub: Any) -> None:
    """Add the ``fleet`` subcommand group (``fleet check``)."""
    p = sub.add_parser("fleet", help="questions about an indexed fleet dataset")
    fleet_sub = p.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    c = fleet_sub.add_parser(
        "check",
        help="which VMs can move to QEMU R on machine M",
        description=(
            "Check every stream's vmdesc against the destination build's -dump-vmstate "
            "schema (schema-R-M.json in --schemas)."
        ),
    )
    c.add_argument("dataset", metavar="DATASET_DIR", help="a dataset written by miglab index")
    c.add_argument("--to-qemu", required=True, metavar="R", help="destination release (7.2)")
    c.add_argument(
        "--machine",
        default=None,
        metavar="M",
        help="destination machine type (default: each stream's own)",
    )
    c.add_argument(
        "--schemas", default=None, metavar="DIR", help="folder of schema-R-M.json (default data/)"
    )
    c.add_argument("--all", action="store_true", help="also list streams of other machine types")
    c.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    c.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Print the table (or JSON) and the summary; 1 if some stream breaks."""
    import miglab.fleet

    fleet = miglab.fleet.open(args.dataset)
    table = miglab.fleet.check(fleet, args.to_qemu, args.machine, schemas=args.schemas)
    counts = table["verdict"].value_counts()
    shown = table if args.all else table[table["verdict"] != "other-machine"]
    if args.json:
        print(json.dumps(shown.to_dict(orient="records"), indent=1, default=str))
    else:
        with_cols = ["file", "release", "machine", "verdict", "errors", "warnings", "reason"]
        if len(shown):
            print(shown[with_cols].to_string(index=False, max_colwidth=90))
        target = f"QEMU {args.to_qemu}" + (f" on {args.machine}" if args.machine else "")
        parts = ", ".join(f"{int(n)} {v}" for v, n in counts.items())
        print(f"{len(table)} streams -> {target}: {parts}")
    return 1 if (table["verdict"] == "breaks").any() else 0
