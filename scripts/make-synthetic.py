#!/usr/bin/env python3
"""Write a synthetic migration stream (miglab.stream.synthetic) for scale tests and benchmarks.

Example:
    scripts/make-synthetic.py /tmp/s.mig --ram 256M --mix zero=0.25,random=0.5,repeated=0.25 --seed 0
"""

from __future__ import annotations

import argparse
import sys

from miglab.errors import MiglabError
from miglab.stream.synthetic import parse_mix, write_synthetic

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``256M`` -> 268435456."""
    unit = text[-1:].upper() if text[-1:].isalpha() else ""
    try:
        return int(text[: len(text) - len(unit)]) * _UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"bad size {text!r}; expected e.g. 256M or 1G") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="stream file to write")
    ap.add_argument(
        "--ram", type=parse_size, default=parse_size("256M"), help="RAM size (256M, 1G)"
    )
    ap.add_argument(
        "--mix", default="random=1", help="page mix, e.g. zero=0.25,random=0.5,repeated=0.25"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--passes",
        type=int,
        default=1,
        help="RAM passes (later ones resend a quarter of the pages)",
    )
    ap.add_argument(
        "--machine", default="pc-q35-7.2", help="machine type in the configuration block"
    )
    args = ap.parse_args(argv)
    try:
        path = write_synthetic(
            args.out,
            ram_bytes=args.ram,
            mix=parse_mix(args.mix),
            seed=args.seed,
            machine=args.machine,
            passes=args.passes,
        )
    except MiglabError as exc:
        print(f"make-synthetic: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
