"""``miglab proxy --listen ADDR --connect ADDR --src-qemu V --to-qemu V --machine M``.

Stand between a source QEMU's outgoing migration (``migrate`` to the ``--listen``
address) and the destination's ``-incoming`` (``--connect``), converting the stream for
the destination on the fly (:mod:`miglab.live.proxy`).  With ``--once`` it exits after
one migration with its summary (exit status 1 if it failed); otherwise it serves
migrations one after another and prints each summary.
"""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli import LazyChoices

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``proxy`` subcommand."""
    p = sub.add_parser("proxy", help="convert a live migration between QEMU releases on the fly")
    versions = LazyChoices("miglab.compat.qemu", "QEMU_VERSIONS")
    p.add_argument("--listen", required=True, metavar="ADDR", help="tcp:HOST:PORT or unix:PATH")
    p.add_argument("--connect", required=True, metavar="ADDR", help="tcp:HOST:PORT or unix:PATH")
    p.add_argument(
        "--src-qemu", required=True, choices=versions, metavar="VERSION",
        help="source QEMU version (%(choices)s)",
    )  # fmt: skip
    p.add_argument(
        "--to-qemu", required=True, choices=versions, metavar="VERSION",
        help="destination QEMU version (%(choices)s)",
    )  # fmt: skip
    p.add_argument("--machine", required=True, help="destination machine type (pc-q35-7.2...)")
    p.add_argument(
        "--allow-guest-visible", action="store_true", help="accept changes the guest could observe"
    )
    p.add_argument("--once", action="store_true", help="exit after one migration")
    p.add_argument(
        "--idle-timeout", type=float, default=None, metavar="SECONDS",
        help="give a migration up when nothing has moved either way for this long "
        "(default 300; 0: wait forever, e.g. for a source paused before switchover)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Proxy one migration (``--once``) or serve them; print each summary and its changes."""
    from miglab.live import parse_address, proxy_once, serve
    from miglab.live.proxy import IDLE_TIMEOUT, ProxySummary

    listen, connect = parse_address(args.listen), parse_address(args.connect)
    idle = IDLE_TIMEOUT if args.idle_timeout is None else args.idle_timeout
    options = {
        "idle_timeout": idle if idle > 0 else None,
        "src_qemu": args.src_qemu,
        "to_qemu": args.to_qemu,
        "machine": args.machine,
        "allow_guest_visible": args.allow_guest_visible,
        "ready": lambda at: print(f"listening on {at}, forwarding to {connect}", flush=True),
    }

    def show(summary: ProxySummary) -> None:
        if summary.changes.changes:
            print(summary.changes)
        if summary.changes.options:
            print(f"destination options needed: {' '.join(summary.changes.options)}")
        print(summary, flush=True)

    if args.once:
        summary = proxy_once(listen, connect, **options)
        show(summary)
        return 0 if summary.error is None else 1
    for summary in serve(listen, connect, **options):
        show(summary)
    return 0
