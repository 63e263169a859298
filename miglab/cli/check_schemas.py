"""``miglab check-schemas SRC.json DST.json [--json] [--direction D]``: static compatibility.

Compares two ``-dump-vmstate`` schemas completely (see :mod:`miglab.compat.schema_check`)
and exits 1 when a finding breaks migration in the checked direction: by default BACKWARD,
streams written by SRC loaded by DST.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``check-schemas`` subcommand."""
    p = sub.add_parser(
        "check-schemas",
        help="compare two -dump-vmstate schemas: what breaks migration between them",
        description=(
            "Directions read SRC as the older and DST as the newer schema: BACKWARD = DST loads "
            "SRC's streams, FORWARD = SRC loads DST's streams, FULL = both."
        ),
    )
    p.add_argument("src", help="-dump-vmstate JSON of the source QEMU")
    p.add_argument("dst", help="-dump-vmstate JSON of the destination QEMU")
    p.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    p.add_argument(
        "--direction",
        choices=("backward", "forward", "full"),
        default="backward",
        help="which must hold for exit status 0 (default: backward, i.e. SRC -> DST)",
    )
    p.add_argument("--all", action="store_true", help="also print info findings (text output only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the findings of the chosen direction(s) and the summary; 1 if migration breaks."""
    import json

    from miglab.compat.schema_check import breaks, compatibility

    report = compatibility(args.src, args.dst)
    chosen = {
        "backward": [("", report.backward)],
        "forward": [("", report.forward)],
        "full": [("SRC->DST: ", report.backward), ("DST->SRC: ", report.forward)],
    }[args.direction]
    findings = [(label, f) for label, group in chosen for f in group]
    if args.json:
        rows = [{**f.to_dict(), "detail": label + f.detail} for label, f in findings]
        print(json.dumps(rows, indent=1))
        print(report.summary(), file=sys.stderr)
    else:
        for label, f in findings:
            if f.severity != "info" or args.all:
                where = f"{f.device}.{f.field}" if f.field else f.device
                print(f"{f.severity:7} {f.kind:18} {where}: {label}{f.detail}")
        print(report.summary())
    return 1 if any(breaks(group) for _, group in chosen) else 0
