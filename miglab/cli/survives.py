"""``miglab survives STREAM [--qemu V] [--machine M] [--devices SET] [--like CAPTURE]``.

Load a stream of miglab's test guest into a real destination QEMU, resume it and say whether
the guest kept running (:func:`miglab.qemu.survives`).  A stream with a sidecar
(``STREAM.json``, written by ``miglab capture``) needs no other option; a stream derived from a
capture (e.g. by ``miglab compat``) names it with ``--like``.  Exit status 0 when the guest
survived, 1 when not, 2 when the judgement could not be made.  A status line on stderr says
what the judge waits for (on a terminal, or with ``--progress``; :mod:`miglab.cli._progress`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from miglab.cli._progress import add_progress_arguments, status_line
from miglab.qemu import QEMU_VERSIONS
from miglab.qemu.capturing import Capture
from miglab.qemu.guest import DEVICE_SETS
from miglab.qemu.survival import WINDOW, survives

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``survives`` subcommand."""
    p = sub.add_parser("survives", help="does the test guest keep running after this stream?")
    p.add_argument("stream", help="a migration stream of the test guest")
    p.add_argument("--qemu", choices=QEMU_VERSIONS, help="destination QEMU (default: capture's)")
    p.add_argument("--machine", help="destination machine type (default: the capture's)")
    p.add_argument("--devices", choices=sorted(DEVICE_SETS), help="device set (default: capture's)")
    p.add_argument("--like", metavar="CAPTURE", help="the captured stream this one derives from")
    p.add_argument("--window", type=float, default=WINDOW, help="seconds to watch after cont")
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the verdict; 0 if the guest survived."""
    like = Capture.load(args.like) if args.like else None
    with status_line(args, "survives") as progress:
        verdict = survives(
            args.stream,
            qemu=args.qemu,
            machine=args.machine,
            devices=args.devices,
            like=like,
            window=args.window,
            progress=progress,
        )
    if args.json:
        print(json.dumps({k: v for k, v in asdict(verdict).items() if k != "console"}))
    else:
        word = "survived" if verdict.survived else "did not survive"
        print(f"{args.stream}: {word}: {verdict.reason} ({verdict.elapsed:.1f} s)")
    return 0 if verdict.survived else 1
