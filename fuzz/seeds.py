"""Seed corpus from data/: small, valid inputs for every target.

Real streams are 250 KiB - 1 MiB, almost all of it RAM pages, and the
fuzzer learns little (and slowly) from mutating page bytes.  So seeds are
cut down: from each representative stream, its first 4 KiB and streams of
header, configuration, RAM block list, four device sections, EOF and a
vmdesc listing just those (with and without the vmdesc), and each
encoder's encoding of one such stream; for long runs also the stream with
every device.  Schemas are cut to a few device entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from targets import TARGETS, seed_for  # type: ignore[import-not-found]

import miglab
from miglab.errors import MiglabError
from miglab.stream.model import Section, SectionKind

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


def tiny_stream(path: Path, start: int, count: int = 4) -> miglab.Stream:
    """The RAM block list and ``count`` device sections from the ``start``-th, vmdesc to match."""
    stream = small_stream(path)
    devices = [r for r in stream.records if isinstance(r, Section) and r.name != "ram"]
    keep = {id(r) for r in devices[start : start + count]}
    stream.records = [
        r for r in stream.records if id(r) in keep or (isinstance(r, Section) and r.name == "ram")
    ]
    if stream.vmdesc is not None:
        names = {(r.name, r.instance_id) for r in devices[start : start + count]}
        stream.vmdesc = dict(stream.vmdesc)
        stream.vmdesc["devices"] = [
            d for d in stream.vmdesc["devices"] if (d["name"], d["instance_id"]) in names
        ]
    return stream


def seeds(*, full: bool = False) -> Iterator[tuple[str, bytes]]:
    """``(target name, input)`` pairs for every target.

    Args:
        full: also the cut-down streams with every device (40-130 KiB each;
            slower to mutate, worth it in long runs).
    """
    encoders = None
    if any(name.startswith("decode:") for name in TARGETS):
        from miglab import encoders
    for name in REPRESENTATIVE:
        path = DATA / name
        yield "load", path.read_bytes()[:4096]
        if full:
            yield "load", small_stream(path).to_bytes()
        for start in range(0, 24, 4):
            tiny = tiny_stream(path, start)
            data = tiny.to_bytes()
            yield "load", data
            yield "verify", data
            if tiny.vmdesc is not None:
                tiny.vmdesc = None
                yield "load", tiny.to_bytes()
        if encoders is not None:
            tiny = tiny_stream(path, 0)
            for fmt in encoders.names():
                try:
                    yield f"decode:{fmt}", encoders.encode(tiny, fmt)
                except MiglabError:
                    continue
    for _kind, data in container_seeds():
        # mapped-ram's page area makes a whole file megabytes: its head (header, block
        # list, bitmaps) is what the fuzzer can mutate within -max_len anyway.
        yield "load", data if len(data) <= 1 << 20 else data[: 1 << 16]
    for data in xbzrle_seeds():
        yield "xbzrle", data
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


def container_seeds() -> Iterator[tuple[str, bytes]]:
    """``(container kind, file bytes)``: one tiny stream in each container miglab reads.

    libvirt save headers (raw and gzip data), mapped-ram (header, bitmaps,
    page areas) and a gzip-compressed stream, all fed to ``load`` (which
    sniffs the container).  qcow2 images need ``qemu-img`` and many KiB of
    clusters; they are fuzzed by their own tests' hostile images instead.
    """
    import gzip
    import tempfile

    from miglab.containers import libvirt, mapped_ram

    tiny = tiny_stream(DATA / "q72-pc-q35-7.2-default.mig", 0)
    with tempfile.TemporaryFile() as fh:
        mapped_ram.write(tiny, fh)
        fh.seek(0)
        yield "mapped-ram", fh.read()
    for fmt in (libvirt.SaveFormat.RAW, libvirt.SaveFormat.GZIP):
        header = libvirt.LibvirtSave(
            magic=b"LibvirtQemudSave",
            version=2,
            data_len=0,
            was_running=0,
            format=fmt,
            xml="<domain type='kvm'><name>fuzz</name></domain>\n",
        )
        with tempfile.TemporaryFile() as fh:
            header.write_to(tiny, fh)
            fh.seek(0)
            yield f"libvirt-{fmt.name.lower()}", fh.read()
    yield "gzip", gzip.compress(tiny.to_bytes(), mtime=0)


def xbzrle_seeds() -> list[bytes]:
    """XBZRLE deltas (ULEB128 zero-run, ULEB128 length, bytes, ...) for a 4 KiB page."""
    return [
        b"\x10\x04abcd",
        b"\x00\x02xy\x80\x20\x01z",
        b"\xfe\x1f\x02\x01\x02",
        b"\x00\x80\x20" + bytes(4096),
    ]


def write_corpus(directory: Path, *, full: bool = False) -> int:
    """Write every seed (prefixed with its target byte) into ``directory``; returns the count."""
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for target, data in seeds(full=full):
        (directory / f"seed-{n:03d}-{target.replace(':', '-')}").write_bytes(seed_for(target, data))
        n += 1
    return n
