"""``miglab migrate --src QMP --dst QMP [--proxy auto|never|always] [--without CAP]...``.

Move a running VM live from the source QEMU to a destination QEMU started with ``-incoming
defer``, both given by their QMP addresses (``unix:PATH`` or ``tcp:HOST:PORT``), with miglab's
proxy in between when the releases differ (:func:`miglab.live.migrate.migrate`): the
capabilities both QEMUs and miglab's live path support are applied on both and proven, the
destination is resumed, and the report says how long it took, what was sent and changed.
Exit status 0 when the destination runs the guest, 1 when the migration failed (QEMU's error
text is in the report), 2 when it could not be set up.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``migrate`` subcommand."""
    p = sub.add_parser("migrate", help="move a running VM live between two QEMUs (via the proxy)")
    p.add_argument("--src", required=True, metavar="QMP", help="source QMP address")
    p.add_argument("--dst", required=True, metavar="QMP", help="destination QMP address")
    p.add_argument(
        "--proxy",
        choices=("auto", "never", "always"),
        default="auto",
        help="through miglab's proxy: when the releases differ (auto), never, always",
    )
    p.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="CAP",
        help="a capability miglab does not offer (xbzrle, compat-transforms, ...); repeatable",
    )
    p.add_argument(
        "--allow-guest-visible",
        action="store_true",
        help="let the proxy make guest-visible changes",
    )
    p.add_argument("--bandwidth", type=int, metavar="BYTES", help="source max-bandwidth, bytes/s")
    p.add_argument("--incoming", metavar="ADDRESS", help="where the destination listens")
    p.add_argument(
        "--via", metavar="ADDRESS", help="a proxy you run (miglab proxy --once) to send through"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole migration")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Migrate and print the report; 0 if the destination runs the guest."""
    from miglab.capabilities import names_of
    from miglab.live.migrate import migrate

    report = migrate(
        args.src,
        args.dst,
        proxy=args.proxy,
        without=args.without,
        allow_guest_visible=args.allow_guest_visible,
        bandwidth=args.bandwidth,
        incoming=args.incoming,
        via=args.via,
        timeout=args.timeout,
    )
    if args.json:
        out: dict[str, Any] = {
            "status": report.status,
            "error": report.error,
            "proxied": report.proxied,
            "transforms": report.transforms,
            "offered": list(names_of(report.offered)),
            "agreed": list(names_of(report.agreed)),
            "total_ms": report.total_ms,
            "downtime_ms": report.downtime_ms,
            "resumed_ms": report.resumed_ms,
            "bytes": report.bytes,
            "passes": report.passes,
            "changes": list(report.changes),
            "options": list(report.options),
        }
        for side in (report.source, report.destination):
            out[side.role] = {
                "version": side.version,
                "machine": side.machine,
                "enabled": list(names_of(side.enabled)),
                "run_state": side.run_state,
            }
        print(json.dumps(out))
    else:
        print(report)
    return 0 if report.ok else 1
