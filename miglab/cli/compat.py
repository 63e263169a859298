"""``miglab compat IN -o OUT --to-qemu V --machine M``: convert a stream for another QEMU.

The input may be in any container (:mod:`miglab.containers`); the output is
written in the same one, except that a mapped-ram file becomes a sequential
stream for a QEMU older than 9.0, which cannot read mapped-ram.  In a
libvirt save image the domain XML's machine type is changed to match.
"""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli import LazyChoices
from miglab.cli._progress import add_progress_arguments, byte_progress
from miglab.errors import CompatError

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``compat`` subcommand."""
    p = sub.add_parser("compat", help="convert a stream for another QEMU version and machine type")
    versions = LazyChoices("miglab.compat.qemu", "QEMU_VERSIONS")
    p.add_argument("file", help="the source migration stream")
    p.add_argument("-o", "--output", required=True, help="where to write the converted stream")
    p.add_argument(
        "--to-qemu",
        required=True,
        choices=versions,
        metavar="VERSION",
        help="destination QEMU version (%(choices)s)",
    )
    p.add_argument("--machine", required=True, help="destination machine type (pc-q35-7.2...)")
    p.add_argument(
        "--from-qemu",
        choices=versions,
        metavar="VERSION",
        help="source QEMU, %(choices)s (default: from the machine name)",
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
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert, print the change report, write the stream."""
    if (args.src_schema is None) != (args.dst_schema is None):
        raise CompatError("give both --src-schema and --dst-schema, or neither")
    from miglab.compat.qemu import convert_stream
    from miglab.containers import load, save
    from miglab.containers.libvirt import LibvirtSave
    from miglab.containers.mapped_ram import MappedRam

    with byte_progress(args, "compat") as progress:
        stream = load(args.file, progress=progress)
    out, report = convert_stream(
        stream,
        to_qemu=args.to_qemu,
        machine=args.machine,
        from_qemu=args.from_qemu,
        allow_guest_visible=args.allow_guest_visible,
        schemas=(args.src_schema, args.dst_schema) if args.src_schema else None,
    )
    out.container = stream.container
    if isinstance(out.container, MappedRam) and _before_mapped_ram(args.to_qemu):
        out.container = None
        print("QEMU before 9.0 reads no mapped-ram: writing a sequential stream")
    if isinstance(out.container, LibvirtSave):
        if isinstance(out.container.inner, MappedRam) and _before_mapped_ram(args.to_qemu):
            out.container = out.container.sequential()
            print("QEMU before 9.0 reads no mapped-ram: writing the libvirt image as raw")
        old = out.container.set_machine(args.machine)
        if old != args.machine:
            print(f"libvirt domain XML: machine {old} -> {args.machine}")
    with byte_progress(args, "compat") as progress:
        save(out, args.output, progress=progress)
    print(report)
    print(
        f"{len(report)} change(s), {len(report.guest_visible)} guest-visible; wrote {args.output}"
    )
    if report.options:
        print(f"start the destination QEMU with: {' '.join(report.options)}")
    return 0


def _before_mapped_ram(version: str) -> bool:
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) < (9, 0)
