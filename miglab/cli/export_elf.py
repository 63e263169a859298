"""``miglab export-elf FILE -o CORE [--snapshot NAME]``: guest RAM as an ELF core file.

The core's ``PT_LOAD`` segments put ``pc.ram`` at the guest-physical addresses of the
stream's machine type (:mod:`miglab.analysis.elf_core`), for ``gdb``, ``crash`` or ``drgn``.
Reads a stream in any container (compressed, libvirt save image, qcow2 snapshot, mapped-ram).
"""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli._progress import add_progress_arguments, byte_progress

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``export-elf`` subcommand."""
    p = sub.add_parser("export-elf", help="write guest RAM as an ELF core (guest-physical layout)")
    p.add_argument("file", help="a migration stream")
    p.add_argument("-o", "--output", required=True, help="the core file to write")
    p.add_argument("--snapshot", help="for a qcow2 image: the snapshot (id or name) to read")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the core and print its segments."""
    from miglab.analysis.elf_core import export_elf, physical_ranges
    from miglab.containers import load

    with byte_progress(args, "export-elf") as progress:
        stream = load(args.file, snapshot=args.snapshot, progress=progress)
    with byte_progress(args, "export-elf") as progress:
        size = export_elf(stream, args.output, progress=progress)
    assert stream.machine is not None  # export_elf refuses a stream without one
    ram = next(b.used_length for b in stream.ram.blocks if b.name == "pc.ram")
    for phys, _, length in physical_ranges(stream.machine, ram):
        print(f"PT_LOAD\t{phys:#x}\t{length:#x}")
    print(f"{args.output}: {size} bytes ({stream.machine})")
    return 0
