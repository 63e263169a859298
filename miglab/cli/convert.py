"""``miglab convert IN -o OUT --to FORMAT``: re-encode a stream in another wire format.

The input format is detected from its first bytes (:func:`miglab.encoders.detect`);
``--to legacy`` writes QEMU's own stream.  ``asn1-per`` input needs the
ASN.1 module it was written with (generated from the stream's descriptions):
``--schema`` names a file holding it (default: ``IN.asn``, which ``--to
asn1-per`` writes beside its output, :func:`miglab.encoders.asn1.schema_text`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from miglab import encoders
from miglab.encoders.asn1 import schema_text
from miglab.stream.reader import open_source

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``convert`` subcommand."""
    p = sub.add_parser("convert", help="re-encode a stream in another wire format")
    p.add_argument("input", help="a stream in any format miglab encodes")
    p.add_argument("-o", "--output", required=True, help="where to write the result")
    p.add_argument("--to", required=True, choices=encoders.names(), help="the output format")
    p.add_argument("--schema", help="ASN.1 module file for asn1-per input (default: IN.asn)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Decode the input, encode it as ``--to``, write it; prints one summary line."""
    data = open_source(args.input)
    name = encoders.detect(data)
    kwargs: dict[str, Any] = {}
    if encoders.get(name).needs_schema:
        module = Path(args.schema or f"{args.input}.asn")
        kwargs["schema"] = module.read_text() if args.schema or module.exists() else None
    stream = encoders.decode(data, name, **kwargs)
    out = encoders.encode(stream, args.to)
    Path(args.output).write_bytes(out)
    if encoders.get(args.to).needs_schema:
        Path(f"{args.output}.asn").write_text(schema_text(stream))
    print(
        f"{args.input} ({name}, {len(data)} bytes) -> {args.output} ({args.to}, {len(out)} bytes)"
    )
    return 0
