#!/usr/bin/env python3
"""Regenerate data/ (reference streams, -dump-vmstate schemas, machine lists) from manifest.json.

The manifest is the one recipe table: per stream the QEMU version, machine, memory, devices,
extra argv and whether the guest ran.  It also states what the stream must look like
(``vmdesc``, ``configuration``, ``footers``); this script checks those claims against the bytes
QEMU wrote, checks that the same QEMU accepts the stream back (judge), fills in ``size`` and
``sha256``, and refreshes the stream table in data/README.md.  Per QEMU build it also dumps
schemas and records ``-machine help`` (machine type -> description, QEMU's own words).

Usage:
    python scripts/make-data.py                  # everything
    python scripts/make-data.py --only 'q72-*'   # files matching a name or glob
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from miglab.qemu import QemuBinary, find_qemu

DATA = Path(__file__).resolve().parents[1] / "data"
MANIFEST = DATA / "manifest.json"
README = DATA / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- streams:begin -->", "<!-- streams:end -->"

# Stream bytes this script checks (QEMU-FORMAT.md 1.1-1.4, 1.8, 2.2).
HEADER = b"QEVM\x00\x00\x00\x03"
VM_CONFIGURATION, VM_SECTION_START, VM_SECTION_FOOTER = 0x07, 0x01, 0x7E
RAM_MEM_SIZE, RAM_EOS, PAGE_MASK = 0x04, 0x10, 0xFFF


def _be(data: bytes, pos: int, size: int) -> int:
    return int.from_bytes(data[pos : pos + size], "big")


def _has_vmdesc(data: bytes) -> bool:
    """Whether the stream ends in ``00 (EOF) 06 be32-len JSON``: the vmdesc trailer."""
    pos = data.rfind(b"\x00\x06")
    while pos >= 0:
        if _be(data, pos + 2, 4) == len(data) - pos - 6:
            json.loads(data[pos + 6 :])
            return True
        pos = data.rfind(b"\x00\x06", 0, pos)
    return False


def _traits(data: bytes) -> dict[str, bool]:
    """Read configuration block, the RAM START section and what follows it.

    Every stream here begins (after an optional configuration block without subsections)
    with the START section of ``ram`` whose block list ends in EOS; a section footer
    repeating its section id follows it iff the machine sends footers.
    """
    if not data.startswith(HEADER):
        raise ValueError("no QEVM v3 header")
    pos = len(HEADER)
    configuration = data[pos] == VM_CONFIGURATION
    if configuration:
        pos += 5 + _be(data, pos + 1, 4)
    if data[pos] != VM_SECTION_START or data[pos + 6 : pos + 6 + data[pos + 5]] != b"ram":
        raise ValueError(f"expected the START section of ram at offset {pos}")
    section_id = data[pos + 1 : pos + 5]
    pos += 6 + data[pos + 5] + 8
    word = _be(data, pos, 8)
    if word & PAGE_MASK != RAM_MEM_SIZE:
        raise ValueError(f"expected the RAM block list at offset {pos}")
    remaining, pos = word & ~PAGE_MASK, pos + 8
    while remaining > 0:
        pos += 1 + data[pos]
        remaining -= _be(data, pos, 8)
        pos += 8
    if _be(data, pos, 8) != RAM_EOS:
        raise ValueError(f"expected RAM EOS at offset {pos}")
    pos += 8
    footers = data[pos] == VM_SECTION_FOOTER and data[pos + 1 : pos + 5] == section_id
    return {"configuration": configuration, "footers": footers, "vmdesc": _has_vmdesc(data)}


def _record(entry: dict[str, Any], path: Path) -> None:
    data = path.read_bytes()
    entry["size"] = len(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()


def make_stream(qemu: QemuBinary, entry: dict[str, Any]) -> None:
    """Make one stream, check its claimed traits and that QEMU accepts it back."""
    path = DATA / entry["file"]
    config = {
        "machine": entry["machine"],
        "memory": entry["memory"],
        "devices": entry["devices"],
        "extra_args": entry["extra_args"],
    }
    qemu.make_stream(path, run_seconds=entry["run_seconds"], **config)
    traits = _traits(path.read_bytes())
    claimed = {key: entry[key] for key in traits}
    if traits != claimed:
        raise SystemExit(f"{entry['file']}: manifest says {claimed}, stream has {traits}")
    verdict = qemu.judge(path, **config)
    if not verdict.accepted:
        raise SystemExit(f"{entry['file']}: QEMU {qemu.version} rejects it: {verdict.stderr}")
    _record(entry, path)


def make_schema(qemu: QemuBinary, entry: dict[str, Any]) -> None:
    """Dump one -dump-vmstate schema."""
    path = qemu.dump_vmstate(DATA / entry["file"], machine=entry["machine"])
    _record(entry, path)


def make_machines(qemu: QemuBinary, entry: dict[str, Any]) -> None:
    """Record one build's ``-machine help`` as JSON (type -> description, in QEMU's order)."""
    path = DATA / entry["file"]
    path.write_text(json.dumps(qemu.machines(), indent=1) + "\n")
    _record(entry, path)


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def stream_table(streams: list[dict[str, Any]]) -> str:
    """Markdown table of every stream: how it was made and what it contains."""
    rows = [
        "| file | QEMU | machine | mem | guest | devices | vmdesc | config | footers | bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in streams:
        guest = f"ran {s['run_seconds']} s" if s["run_seconds"] else "paused"
        devices = "<br>".join(f"`{d}`" for d in s["devices"]) or "(none)"
        if s["extra_args"]:
            devices += f"<br>`{' '.join(s['extra_args'])}`"
        rows.append(
            f"| {s['file']} | {s['qemu']} | {s['machine']} | {s['memory']} | {guest} | {devices} "
            f"| {_yes(s['vmdesc'])} | {_yes(s['configuration'])} | {_yes(s['footers'])} "
            f"| {s['size']} |"
        )
    return "\n".join(rows)


def refresh_readme(streams: list[dict[str, Any]]) -> None:
    text = README.read_text()
    head, rest = text.split(TABLE_BEGIN)
    _, tail = rest.split(TABLE_END)
    README.write_text(f"{head}{TABLE_BEGIN}\n{stream_table(streams)}\n{TABLE_END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="file name or glob")
    args = parser.parse_args(argv)
    manifest = json.loads(MANIFEST.read_text())
    jobs = [(make_stream, e) for e in manifest["streams"]]
    jobs += [(make_schema, e) for e in manifest["schemas"]]
    jobs += [(make_machines, e) for e in manifest["machines"]]
    if args.only:
        jobs = [(f, e) for f, e in jobs if any(fnmatch.fnmatch(e["file"], p) for p in args.only)]
    for make, entry in jobs:
        make(find_qemu(entry["qemu"]), entry)
        print(f"{entry['file']}: {entry['size']} bytes", flush=True)
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")  # progress survives a failure
    refresh_readme(manifest["streams"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
