#!/usr/bin/env python3
"""Write a synthetic fleet of streams made from the real ones in data/ (miglab.fleet.synthetic).

Varied RAM sizes, device sets, releases and machine types, a few corrupted files, and a
manifest.json naming each stream's QEMU release (which `miglab index` reads).

Example:
    scripts/make-fleet.py /tmp/fleet --count 1000 --seed 0
    miglab index /tmp/fleet -o /tmp/fleet.dataset
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from miglab.fleet.synthetic import make_fleet

DATA = Path(__file__).resolve().parents[1] / "data"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write the streams and manifest.json to")
    ap.add_argument("--count", type=int, default=1000, help="streams to write (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ram-mib",
        default="16,32,64,128,256",
        help="guest RAM sizes to draw from, in MiB (default 16,32,64,128,256)",
    )
    ap.add_argument(
        "--corrupt", type=float, default=0.01, help="share of corrupted files (default 0.01)"
    )
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="use only real streams whose name contains TEXT (repeatable; e.g. -net)",
    )
    ap.add_argument("--data", type=Path, default=DATA, help="the real streams (default data/)")
    args = ap.parse_args(argv)
    rows = make_fleet(
        args.out,
        args.count,
        data_dir=args.data,
        seed=args.seed,
        ram_mib=[int(x) for x in args.ram_mib.split(",")],
        corrupt=args.corrupt,
        only=args.only,
    )
    releases = collections.Counter(str(r["qemu"]) for r in rows)
    bad = sum(r["corrupt"] is not None for r in rows)
    total = sum(p.stat().st_size for p in Path(args.out).glob("*.mig"))
    print(
        f"{args.out}: {len(rows)} streams, {total / 1e6:.0f} MB, {bad} corrupted, {dict(releases)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
