"""``miglab convert IN -o OUT --to FORMAT``: re-encode a stream in another wire format.

The input format is detected from its first bytes (:func:`miglab.encoders.detect`);
``--to legacy`` writes QEMU's own stream.  Input in a container (compressed,
libvirt save image, qcow2 snapshot, mapped-ram file: :mod:`miglab.containers`)
is unwrapped first, so ``--to legacy`` turns a mapped-ram file into a
sequential stream; ``--to mapped-ram`` writes a mapped-ram file.  Every format
decodes from its own bytes (``asn1-per`` regenerates its ASN.1 module from the
descriptions it carries), so no side file is read or written.
"""

from __future__ import annotations

import argparse
from typing import Any

from miglab.cli import LazyChoices
from miglab.cli._progress import add_progress_arguments, byte_progress

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``convert`` subcommand."""
    p = sub.add_parser("convert", help="re-encode a stream in another wire format")
    p.add_argument("input", help="a stream in any format miglab encodes")
    p.add_argument("-o", "--output", required=True, help="where to write the result")
    p.add_argument(
        "--to",
        required=True,
        choices=LazyChoices("miglab.encoders", "names", extra=("mapped-ram",)),
        metavar="FORMAT",
        help="the output format: %(choices)s",
    )
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Decode the input, encode it as ``--to``, write it; prints one summary line."""
    from miglab import containers, encoders
    from miglab.stream.reader import open_source

    data = open_source(args.input)
    container = containers.detect(data)
    if container != "bare" or args.to == "mapped-ram":
        return _from_container(args, data, container)
    name = encoders.detect(data)
    kwargs: dict[str, Any] = {}
    with byte_progress(args, "convert") as progress:
        if name == "legacy":
            kwargs["progress"] = progress
        stream = encoders.decode(data, name, **kwargs)
    if args.to == "legacy":
        # QEMU's stream is written as it is encoded: a 16 GiB guest never sits in memory.
        from miglab.stream.writer import save

        with byte_progress(args, "convert") as progress:
            size = save(stream, args.output, progress=progress).stat().st_size
    else:
        size = _encode_to(stream, args)
    print(f"{args.input} ({name}, {len(data)} bytes) -> {args.output} ({args.to}, {size} bytes)")
    return 0


def _from_container(args: argparse.Namespace, data: memoryview, container: str) -> int:
    """Unwrap the input, write the bare stream (``legacy``), a mapped-ram file or an encoding."""
    from miglab import containers
    from miglab.containers.mapped_ram import MappedRam

    with byte_progress(args, "convert") as progress:
        stream = containers.load(data, progress=progress)
    if args.to in ("legacy", "mapped-ram"):
        chosen = MappedRam() if args.to == "mapped-ram" else None
        with byte_progress(args, "convert") as progress:
            out = containers.save(stream, args.output, container=chosen, progress=progress)
        size = out.stat().st_size
    else:
        size = _encode_to(stream, args)
    print(
        f"{args.input} ({containers.container_name(stream)}, {len(data)} bytes) -> "
        f"{args.output} ({args.to}, {size} bytes)"
    )
    return 0


def _encode_to(stream: Any, args: argparse.Namespace) -> int:
    """Write ``stream`` encoded as ``--to``; returns the size written."""
    from miglab import encoders
    from miglab.files import atomic_output

    budget = stream.source_size or None
    out = encoders.encode(stream, args.to)
    with atomic_output(args.output, input_bytes=budget) as fh:
        fh.write(out)
    return len(out)
