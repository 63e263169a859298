#!/usr/bin/env python3
"""Harvest each QEMU build's device descriptions from the vmdesc of its own test migrations.

The live proxy decodes device sections before the vmdesc arrives (it comes last), from the
source build's descriptions (``miglab.live.decoding``).  ``-dump-vmstate`` lacks many
(cpu, timers, apic, legacy sections...) and gives no field types, so this script keeps
the vmdesc device entries of real migrations made by the same build:

* the running test guest's live captures (``miglab.qemu.capture_cache``: both device
  sets on the build's newest q35 and i440fx machines; made if missing, which needs the
  guest and minutes per capture);
* the build's streams in ``data/`` (``q72-*``, ``q100-*``, ``live-*``).

Output: ``data/vmdesc-<qemu>.json`` = ``{"qemu", "sources", "devices": {idstr: [entry,
...]}}``, distinct entries per section idstr in the order first seen (running guests
first).  Regenerate with ``python scripts/harvest-vmdesc.py [--qemu 7.2 ...]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miglab.qemu import QEMU_VERSIONS  # noqa: E402
from miglab.qemu.capture_cache import cached_capture  # noqa: E402
from miglab.stream.reader import load  # noqa: E402

DATA = ROOT / "data"
PREFIX = {"7.2": "q72-", "10.0": "q100-"}


def _streams(qemu: str) -> list[Path]:
    out = []
    for family in ("q35", "i440fx"):
        for devices in ("virtio", "legacy"):
            capture = cached_capture(qemu, f"pc-{family}-{qemu}", devices)
            out.append(capture.stream)
    prefix = PREFIX.get(qemu)
    if prefix is not None:
        out += sorted(DATA.glob(f"{prefix}*.mig")) + sorted(DATA.glob(f"live-{prefix}*.mig"))
    return out


def harvest(qemu: str) -> dict[str, object]:
    devices: dict[str, list[dict[str, object]]] = {}
    keys: dict[str, set[str]] = {}
    sources = []
    for path in _streams(qemu):
        stream = load(path)
        if stream.vmdesc is None:
            continue
        sources.append(path.name)
        for dev in stream.vmdesc["devices"]:
            if "vmsd_name" not in dev:  # a legacy handler's bytes: nothing to describe
                continue
            entry = {k: v for k, v in dev.items() if k != "instance_id"}
            key = json.dumps(entry, sort_keys=True)
            if key not in keys.setdefault(dev["name"], set()):
                keys[dev["name"]].add(key)
                devices.setdefault(dev["name"], []).append(entry)
    return {"qemu": qemu, "sources": sources, "devices": devices}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qemu", action="append", choices=QEMU_VERSIONS)
    args = parser.parse_args()
    for qemu in args.qemu or QEMU_VERSIONS:
        data = harvest(qemu)
        out = DATA / f"vmdesc-{qemu}.json"
        out.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")
        print(f"{out.name}: {len(data['devices'])} sections from {len(data['sources'])} streams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
