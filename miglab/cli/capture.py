"""``miglab capture OUT --qemu V --machine M [--devices SET] [--mode live|xbzrle|paused]``.

Boot miglab's test guest (``scripts/build-guest.sh``) on a real QEMU, let it beat, and migrate
it to the file OUT while it runs (:func:`miglab.qemu.capture`); the sidecar ``OUT.json`` says
what ran and the last heartbeat before the migration completed, for ``miglab survives``.
Booting and migrating take tens of seconds: a status line on stderr says which step runs
(on a terminal, or with ``--progress``; see :mod:`miglab.cli._progress`).
"""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli._progress import add_progress_arguments, status_line
from miglab.qemu import QEMU_VERSIONS
from miglab.qemu.capturing import BANDWIDTH, MODES, capture
from miglab.qemu.guest import DEVICE_SETS

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``capture`` subcommand."""
    p = sub.add_parser("capture", help="migrate the running test guest to a file")
    p.add_argument("out", help="the stream file to write (and OUT.json)")
    p.add_argument("--qemu", required=True, choices=QEMU_VERSIONS)
    p.add_argument("--machine", required=True, help="machine type, e.g. pc-q35-7.2")
    p.add_argument("--devices", default="virtio", choices=sorted(DEVICE_SETS))
    p.add_argument("--mode", default="live", choices=MODES)
    p.add_argument("--bandwidth", type=int, default=BANDWIDTH, help="bytes/s while live")
    p.add_argument("--passes", type=int, help="RAM syncs to force before completing (live)")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Capture; print what was captured."""
    with status_line(args, "capture") as progress:
        record = capture(
            args.out,
            qemu=args.qemu,
            machine=args.machine,
            devices=args.devices,
            mode=args.mode,
            bandwidth=args.bandwidth,
            passes=args.passes,
            progress=progress,
        )
    size = record.stream.stat().st_size
    print(
        f"{record.stream}: {size} bytes, {record.mode}, {record.ram_passes} RAM passes, "
        f"last heartbeat {record.last_counter}, {record.seconds:.1f} s"
    )
    return 0
