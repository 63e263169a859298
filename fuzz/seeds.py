"""Seed corpus from data/: small, valid inputs for every target.

Real streams are 250 KiB - 1 MiB, almost all of it RAM pages, and the
fuzzer learns little from mutating page bytes.  So seeds are cut down:
each representative stream without its RAM PART chunks (header,
configuration, block list, every device section, EOF, vmdesc), the same
without its vmdesc, its first 4 KiB, and each encoder's encoding of the
cut-down stream.  Schemas are cut to a few device entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import miglab
from miglab.errors import MiglabError
from miglab.stream.model import Section, SectionKind

from targets import TARGETS, seed_for  # type: ignore[import-not-found]

__all__ = ("REPRESENTATIVE", "seeds", "write_corpus")

DATA = Path(__file__).resolve().parents[1] / "data"

# One stream per QEMU version x machine family, plus the oldest shapes
# (no configuration block: 2.3; no vmdesc and no footers: 2.2).
REPRESENTATIVE = (
    "q72-pc-i440fx-2.2-default.mig",
    "q72-pc-i440fx-2.3-default.mig",
    "q72-pc-i440fx-7.2-net.mig",
    "q72-pc-q35-7.2-pcie.mig",
    "q100-pc-i440fx-10.0-virtio.mig",
    "q100-pc-q35-10.0-usb.mig",
)


def small_stream(path: Path) -> miglab.Stream:
    """The stream without RAM PART chunks (block list and devices kept)."""
    stream = miglab.load(path)
    stream.records = [
        r
        for r in stream.records
        if not (isinstance(r, Section) and r.name == "ram" and r.kind is SectionKind.PART)
    ]
    return stream


def seeds() -> Iterator[tuple[str, bytes]]:
    """``(target name, input)`` pairs for every target."""
    encoders = None
    if any(name.startswith("decode:") for name in TARGETS):
        from miglab import encoders
    for name in REPRESENTATIVE:
        raw = (DATA / name).read_bytes()
        small = small_stream(DATA / name)
        data = small.to_bytes()
        yield "load", data
        yield "load", raw[:4096]
        yield "verify", data
        bare = small_stream(DATA / name)
        bare.vmdesc = None
        yield "load", bare.to_bytes()
        if encoders is not None:
            for fmt in encoders.names():
                try:
                    yield f"decode:{fmt}", encoders.encode(small, fmt)
                except MiglabError:
                    continue
    schemas = sorted(DATA.glob("schema-*.json"))
    for path in schemas[:2]:
        full = json.loads(path.read_text())
        keys = [k for k in full if k != "vmschkmachine"]
        for start in range(0, 60, 12):
            cut = {k: full[k] for k in keys[start : start + 6]}
            if "vmschkmachine" in full:
                cut["vmschkmachine"] = full["vmschkmachine"]
            text = json.dumps(cut, indent=1).encode()
            for target in ("schema", "check-schemas"):
                if target in TARGETS:
                    yield target, text


def write_corpus(directory: Path) -> int:
    """Write every seed (prefixed with its target byte) into ``directory``; returns the count."""
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for target, data in seeds():
        (directory / f"seed-{n:03d}-{target.replace(':', '-')}").write_bytes(seed_for(target, data))
        n += 1
    return n
