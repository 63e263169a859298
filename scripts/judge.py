#!/usr/bin/env python3
"""Ask a real QEMU whether it accepts a migration stream, and why not.

The destination must be configured like the source, either by hand or by naming a stream of
data/manifest.json whose recipe (machine, memory, devices, extra argv) to copy:

    python scripts/judge.py out.mig --qemu 7.2 --machine pc-q35-7.2 --device e1000
    python scripts/judge.py out.mig --qemu 7.2 --like q72-pc-q35-7.2-audio.mig
    python scripts/judge.py out.mig --qemu 7.2 --machine pc -- -audiodev none,id=snd0

Prints ``accepted`` or ``rejected (<status>)`` with QEMU's stderr; exit status 0 iff accepted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from miglab.qemu import QEMU_VERSIONS, find_qemu

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "manifest.json"


def _recipe(file: str) -> tuple[str, str, list[str], list[str]]:
    """Return (machine, memory, devices, extra_args) of a data/ stream."""
    for entry in json.loads(MANIFEST.read_text())["streams"]:
        if entry["file"] == file:
            return entry["machine"], entry["memory"], entry["devices"], entry["extra_args"]
    raise SystemExit(f"judge: {file} is not a stream of {MANIFEST}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", type=Path)
    parser.add_argument("--qemu", required=True, choices=QEMU_VERSIONS)
    parser.add_argument("--machine", help="destination machine type")
    parser.add_argument("--memory", default="16M", help="guest RAM (default: 16M, as data/)")
    parser.add_argument("--device", action="append", default=[], help="a -device value")
    parser.add_argument("--like", metavar="FILE", help="copy the recipe of this data/ stream")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    if args.like:
        machine, memory, devices, extra = _recipe(args.like)
    elif args.machine:
        machine, memory, devices = args.machine, args.memory, args.device
    else:
        parser.error("give --machine or --like")
    result = find_qemu(args.qemu).judge(
        args.stream,
        machine=machine,
        memory=memory,
        devices=devices,
        extra_args=extra,
        timeout=args.timeout,
    )
    print("accepted" if result.accepted else f"rejected ({result.status})")
    if result.stderr:
        print(result.stderr, end="")
    return 0 if result.accepted else 1


if __name__ == "__main__":
    sys.exit(main())
