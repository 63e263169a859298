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
    for target, data in surface_seeds():
        if target in TARGETS:
            yield target, data
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


def qcow2_seeds() -> Iterator[bytes]:
    """Small qcow2 images (512-byte clusters) with real snapshot tables and L1/L2 tables:
    ``qemu-img`` makes the image and a disk-only snapshot, miglab writes a tiny stream as
    its VM state (``qemu-img check`` finds the result clean).  None without ``qemu-img``."""
    import shutil
    import subprocess
    import tempfile

    from miglab.containers import qcow2
    from miglab.containers.qcow2_format import read_header, read_snapshots

    program = shutil.which("qemu-img")
    if program is None:
        return
    tiny = tiny_stream(DATA / "q72-pc-q35-7.2-default.mig", 0)
    with tempfile.TemporaryDirectory(prefix="miglab-seed-") as tmp:
        disk = Path(tmp) / "disk.qcow2"
        make = [program, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", str(disk), "64K"]
        subprocess.run(make, check=True)
        for names in (("s",), ("a", "b")):
            for name in names:
                subprocess.run([program, "snapshot", "-c", name, str(disk)], check=True)
            view = memoryview(disk.read_bytes())
            header = read_header(view)
            snap = read_snapshots(view, header)[-1]
            out = Path(tmp) / f"state-{len(names)}.qcow2"
            qcow2.Qcow2Snapshot(snap, header, view).save_as(tiny, out)
            yield out.read_bytes()


def slirp_seeds() -> Iterator[bytes]:
    """``slirp`` section payloads of real streams: idle networks and a connected guestfwd."""
    from miglab.stream.device_sections import section_payload

    for path in [*sorted(DATA.glob("live-*-slirp-tcp.mig"))[:1], DATA / REPRESENTATIVE[2]]:
        data = path.read_bytes()
        for s in miglab.load(data).sections:
            if s.name == "slirp":
                yield section_payload(s, data)


_LISTEN = b"\x08\x00\x04\x00\x00"
_RUN = b"\x08\x00\x05\x00\x00"


def surface_seeds() -> Iterator[tuple[str, bytes]]:
    """Seeds of the targets beyond ``load``: qcow2, slirp, postcopy blobs, the live pump,
    diff pairs and fleet files."""
    from targets import join_pair  # type: ignore[import-not-found]

    for data in qcow2_seeds():
        yield "qcow2", data
    for data in slirp_seeds():
        yield "slirp", data
    old = tiny_stream(DATA / REPRESENTATIVE[3], 0)  # 7.2, pc-q35-7.2
    new = tiny_stream(DATA / "q100-pc-q35-10.0-default.mig", 0)
    for stream in (old, new):
        raw = stream.to_bytes()
        records = miglab.load(raw).records  # offsets in ``raw``, not in the file cut down
        devices = [r for r in records if isinstance(r, Section) and r.name != "ram"]
        body = raw[devices[0].offset : devices[-1].offset + devices[-1].size]
        yield "postcopy", _LISTEN + body + _RUN
        inner = _LISTEN + body[: devices[1].offset - devices[0].offset] + _RUN
        packaged = b"\x08\x00\x07\x00\x04" + len(inner).to_bytes(4, "big") + inner
        yield "postcopy", _LISTEN + packaged + _RUN  # PACKAGED in PACKAGED: past the limit
        yield "fleet", raw
    yield "live", b"\x00" + old.to_bytes()
    yield "live", b"\x01" + new.to_bytes()
    yield "live", b"\x01" + new.to_bytes()[:2000]
    yield "diff", join_pair(old.to_bytes(), new.to_bytes())
    yield "diff", join_pair(old.to_bytes(), old.to_bytes())
    for _kind, data in container_seeds():
        if len(data) <= 1 << 16:
            yield "fleet", data


def xbzrle_seeds() -> list[bytes]:
    """XBZRLE deltas (ULEB128 zero-run, ULEB128 length, bytes, ...) for a 4 KiB page."""
    return [
        b"\x10\x04abcd",
        b"\x00\x02xy\x80\x20\x01z",
        b"\xfe\x1f\x02\x01\x02",
        b"\x00\x80\x20" + bytes(4096),
    ]


def write_corpus(directory: Path, *, full: bool = False, only: str | None = None) -> int:
    """Write every seed into ``directory``; returns the count.

    Each seed is prefixed with its target's byte, or, with ``only``, is just
    the input of that one target (the harness then runs it alone).
    """
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for target, data in seeds(full=full):
        if only is not None and target != only:
            continue
        body = data if only is not None else seed_for(target, data)
        (directory / f"seed-{n:03d}-{target.replace(':', '-')}").write_bytes(body)
        n += 1
    return n
