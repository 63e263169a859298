"""``miglab compat IN -o OUT --to-qemu V --machine M``: convert a stream for another QEMU."""

from __future__ import annotations

import argparse
from typing import Any

from miglab.compat.qemu import QEMU_VERSIONS, convert_stream
from miglab.errors import CompatError
from miglab.stream.reader import load
from miglab.stream.writer import save

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``compat`` subcommand."""
    p = sub.add_parser("compat", help="convert a stream for another QEMU version and machine type")
    p.add_argument("file", help="the source migration stream")
    p.add_argument("-o", "--output", required=True, help="where to write the converted stream")
    p.add_argument(
        "--to-qemu", required=True, choices=QEMU_VERSIONS, help="destination QEMU version"
    )
    p.add_argument("--machine", required=True, help="destination machine type (pc-q35-7.2...)")
    p.add_argument(
        "--from-qemu", choices=QEMU_VERSIONS, help="source QEMU (default: from the machine name)"
    )
    p.add_argument(
        "--allow-guest-visible", action="store_true", help="accept changes the guest could observe"
    )
    p.add_argument(
        "--src-schema",
        help="-dump-vmstate of the source QEMU and machine (with --dst-schema: convert what "
        "no rule covers from the two schemas)",
    )
    p.add_argument("--dst-schema", help="-dump-vmstate of the destination QEMU and machine")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert, print the change report, write the stream."""
    if (args.src_schema is None) != (args.dst_schema is None):
        raise CompatError("give both --src-schema and --dst-schema, or neither")
    stream = load(args.file)
    out, report = convert_stream(
        stream,
        to_qemu=args.to_qemu,
        machine=args.machine,
        from_qemu=args.from_qemu,
        allow_guest_visible=args.allow_guest_visible,
        schemas=(args.src_schema, args.dst_schema) if args.src_schema else None,
    )
    save(out, args.output)
    print(report)
    print(
        f"{len(report)} change(s), {len(report.guest_visible)} guest-visible; wrote {args.output}"
    )
    if report.options:
        print(f"start the destination QEMU with: {' '.join(report.options)}")
    return 0
