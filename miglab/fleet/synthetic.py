"""A synthetic fleet: many streams made from the real ones in ``data/``, for scale tests.

Each stream starts as a real QEMU stream (so releases, machine types and device sets are
real ones) and is then changed the way VMs of one fleet differ, at the byte level, keeping
QEMU's framing (QEMU-FORMAT.md 1.9, 2.2):

* RAM size: ``pc.ram``'s length in the block list grows, and one more PART ``ram`` chunk
  sends the added pages, as ZERO records with a share of random data pages;
* passes: some streams re-send part of those data pages in a second chunk (a dirty pass);
* device set: some streams leave out one or two device sections (and their vmdesc entries);
* state: the ``timer`` section's ``cpu_ticks_offset`` differs from VM to VM;
* a few files are corrupted: truncated inside the device state, a bad magic, empty,
  random bytes, or a vmdesc length far past the end.

The release of every stream is written to ``manifest.json`` in the shape of
``data/manifest.json`` (the index reads it, see :mod:`miglab.fleet.rows`).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from miglab.analysis.frames import fields_frame
from miglab.files import atomic_output
from miglab.stream.model import Section, SectionKind
from miglab.stream.ram import RamPayload
from miglab.stream.reader import load
from miglab.wire import RamFlag, SectionType

__all__ = ("CORRUPTIONS", "Base", "bases", "make_fleet")

CORRUPTIONS = ("truncated", "magic", "empty", "random", "vmdesc-length")
_PAGE = 4096
_BLOCK = b"pc.ram"


@dataclass(frozen=True, slots=True)
class Base:
    """A real stream and what a synthetic copy needs to know about its layout."""

    name: str
    qemu: str
    machine: str
    data: bytes
    ram_section_id: int
    ram_end: int  # offset of the END ram record: new chunks go before it
    footers: bool
    block_at: int  # offset of pc.ram's be64 used_length in the block list
    total_at: int  # offset of the block list's be64 total | MEM_SIZE
    droppable: tuple[tuple[int, int, str, int], ...]  # (offset, size, idstr, instance)
    ticks_at: int | None  # offset of timer.cpu_ticks_offset
    vmdesc_at: int | None  # offset of the VMDESCRIPTION record
    device_state: tuple[int, int]  # span of the device sections (for truncation)


def _base(path: Path, qemu: str, machine: str, default: set[tuple[str, int]] | None) -> Base:
    data = path.read_bytes()
    stream = load(data)
    secs = [r for r in stream.records if isinstance(r, Section)]
    ram = [s for s in secs if s.name == "ram"]
    start = next(s for s in ram if s.kind is SectionKind.START)
    end = next(s for s in ram if s.kind is SectionKind.END)
    block_at = data.index(bytes([len(_BLOCK)]) + _BLOCK, start.offset, start.offset + start.size)
    header = 1 + 4 + 1 + 3 + 4 + 4  # START header of "ram"
    devices = [
        s
        for s in secs
        if s.kind is SectionKind.FULL and not isinstance(s.payload, RamPayload) and s.size
    ]
    droppable = tuple(
        (s.offset, s.size, s.name, s.instance_id)
        for s in devices
        if default is not None and (s.name, s.instance_id) not in default
    )
    ticks_at = None
    fields = fields_frame(stream)
    hit = fields[(fields["section"] == "timer") & (fields["path"] == "cpu_ticks_offset")]
    if len(hit):
        ticks_at = int(hit["offset"].iloc[0])
    vmdesc_at = None
    if stream.vmdesc is not None:
        vmdesc_at = len(data) - len(stream.trailer) - len(stream.vmdesc_json()) - 5
        assert data[vmdesc_at] == SectionType.VMDESCRIPTION
    return Base(
        path.name,
        qemu,
        machine,
        data,
        start.section_id,
        end.offset,
        end.footer,
        block_at + 1 + len(_BLOCK),
        start.offset + header,
        droppable,
        ticks_at,
        vmdesc_at,
        (devices[0].offset, devices[-1].offset + devices[-1].size) if devices else (0, 0),
    )


@cache
def bases(data_dir: str) -> tuple[Base, ...]:
    """Every real stream of ``data_dir`` (read through its ``manifest.json``)."""
    manifest = json.loads(Path(data_dir, "manifest.json").read_text())
    defaults: dict[tuple[str, str], set[tuple[str, int]]] = {}
    for s in manifest["streams"]:
        if s["file"].endswith(f"{s['machine']}-default.mig"):
            stream = load(Path(data_dir, s["file"]))
            defaults[s["qemu"], s["machine"]] = {(x.name, x.instance_id) for x in stream.sections}
    # Only the devices a device set adds may be left out (no default stream: none).
    return tuple(
        _base(
            Path(data_dir, s["file"]),
            str(s["qemu"]),
            str(s["machine"]),
            defaults.get((s["qemu"], s["machine"])),
        )
        for s in manifest["streams"]
    )


def _ram_chunk(
    base: Base, first_page: int, pages: int, data_pages: int, rng: np.random.Generator
) -> bytes:
    """A PART ram section sending pages ``first_page..``: ZERO records, then random pages."""
    is_data = np.zeros(pages, dtype=bool)
    is_data[rng.choice(pages, size=min(data_pages, pages), replace=False)] = True
    offsets = (np.arange(pages, dtype=np.uint64) + np.uint64(first_page)) * np.uint64(_PAGE)
    order = np.concatenate([offsets[~is_data], offsets[is_data]])
    flags = np.where(np.arange(pages) < pages - int(is_data.sum()), RamFlag.ZERO, RamFlag.PAGE)
    words = order | flags.astype(np.uint64) | np.uint64(RamFlag.CONTINUE)
    words[0] &= ~np.uint64(RamFlag.CONTINUE)  # the first record names its block
    out = [bytes([SectionType.PART]), struct.pack(">I", base.ram_section_id)]
    zeros = pages - int(is_data.sum())
    if zeros:
        rec = np.zeros(zeros, dtype=[("word", ">u8"), ("fill", "u1")])
        rec["word"] = words[:zeros]
        raw = rec.tobytes()
        out += [raw[:8], bytes([len(_BLOCK)]), _BLOCK, raw[8:]]
    noise = rng.bytes(_PAGE * (pages - zeros))
    for j, word in enumerate(words[zeros:].tolist()):
        out.append(struct.pack(">Q", word))
        if zeros == 0 and j == 0:
            out += [bytes([len(_BLOCK)]), _BLOCK]
        out.append(noise[j * _PAGE : (j + 1) * _PAGE])
    out.append(struct.pack(">Q", RamFlag.EOS))
    if base.footers:
        out += [bytes([SectionType.FOOTER]), struct.pack(">I", base.ram_section_id)]
    return b"".join(out)


def _stream(
    base: Base, ram_mib: int, data_pages: int, dirty: int, drop: int, rng: np.random.Generator
) -> bytes:
    data = bytearray(base.data)
    old = struct.unpack_from(">Q", data, base.block_at)[0]
    new = max(old, ram_mib << 20)
    total = struct.unpack_from(">Q", data, base.total_at)[0] & ~(_PAGE - 1)
    struct.pack_into(">Q", data, base.block_at, new)
    struct.pack_into(">Q", data, base.total_at, (total - old + new) | RamFlag.MEM_SIZE)
    if base.ticks_at is not None:
        struct.pack_into(">q", data, base.ticks_at, int(rng.integers(1, 1 << 40)))
    extra = b""
    if new > old:
        first, pages = old // _PAGE, (new - old) // _PAGE
        extra = _ram_chunk(base, first, pages, data_pages, rng)
        if dirty:
            extra += _ram_chunk(base, first, min(pages, dirty), dirty, rng)
    dropped = []
    if drop and base.droppable and base.vmdesc_at is not None:
        picks = rng.choice(len(base.droppable), size=min(drop, len(base.droppable)), replace=False)
        dropped = sorted((base.droppable[int(i)] for i in picks), reverse=True)
    tail = b""
    if dropped and base.vmdesc_at is not None:
        vmdesc = json.loads(
            data[base.vmdesc_at + 5 : base.vmdesc_at + 5 + _be32(data, base.vmdesc_at + 1)]
        )
        gone = {(name, inst) for _, _, name, inst in dropped}
        vmdesc["devices"] = [
            d for d in vmdesc["devices"] if (d["name"], d["instance_id"]) not in gone
        ]
        body = json.dumps(vmdesc, separators=(", ", ": ")).encode()
        rest = data[base.vmdesc_at + 5 + _be32(data, base.vmdesc_at + 1) :]
        tail = bytes([SectionType.VMDESCRIPTION]) + struct.pack(">I", len(body)) + body + rest
        del data[base.vmdesc_at :]
        for offset, size, _, _ in dropped:
            del data[offset : offset + size]
    out = bytes(data[: base.ram_end]) + extra + bytes(data[base.ram_end :]) + tail
    return out


def _be32(data: bytes | bytearray, at: int) -> int:
    return int(struct.unpack_from(">I", data, at)[0])


def _corrupt(kind: str, good: bytes, base: Base, rng: np.random.Generator) -> bytes:
    if kind == "truncated":
        lo, hi = base.device_state  # measured from the end, which the RAM chunk did not move
        cut = len(good) - (len(base.data) - int(rng.integers(lo + 1, hi)))
        return good[: max(cut, 1)]
    if kind == "magic":
        return b"QEVX" + good[4:]
    if kind == "empty":
        return b""
    if kind == "random":
        return rng.bytes(int(rng.integers(1, 64 << 10)))
    if kind == "vmdesc-length":
        at = len(good) - (len(base.data) - base.vmdesc_at) if base.vmdesc_at else len(good) - 5
        return good[: at + 1] + struct.pack(">I", 0x7FFFFFF0) + good[at + 5 :]
    raise ValueError(f"unknown corruption {kind!r}")


def make_fleet(
    out: str | os.PathLike[str],
    count: int,
    *,
    data_dir: str | os.PathLike[str],
    seed: int = 0,
    ram_mib: Sequence[int] = (16, 32, 64, 128, 256),
    data_share: float = 0.005,
    corrupt: float = 0.01,
    drop_share: float = 0.3,
    dirty_share: float = 0.2,
    only: Sequence[str] = (),
) -> list[dict[str, object]]:
    """Write ``count`` streams (and ``manifest.json``) to ``out``; returns the manifest rows.

    Args:
        out: the folder (created).
        count: streams to write.
        data_dir: the real streams (``data/`` of a source checkout).
        seed: everything random follows it.
        ram_mib: guest RAM sizes to draw from.
        data_share: share of the added RAM pages sent as random data pages.
        corrupt: share of files corrupted (at least one when ``count >= 20``).
        drop_share: share of streams that leave out one or two device sections.
        dirty_share: share of streams with a second pass over some pages.
        only: restrict bases to real streams whose file name contains one of these.
    """
    rng = np.random.default_rng(seed)
    pool = [b for b in bases(os.fspath(data_dir)) if not only or any(o in b.name for o in only)]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    n_bad = max(round(count * corrupt), 1 if count >= 20 and corrupt > 0 else 0)
    bad = set(rng.choice(count, size=n_bad, replace=False).tolist()) if n_bad else set()
    rows: list[dict[str, object]] = []
    for i in range(count):
        base = pool[int(rng.integers(len(pool)))]
        ram = int(rng.choice(ram_mib))
        added = max(0, (ram << 20) - (16 << 20)) // _PAGE
        dirty = int(added * data_share) // 2 if rng.random() < dirty_share else 0
        drop = int(rng.integers(1, 3)) if rng.random() < drop_share and i not in bad else 0
        body = _stream(base, ram, int(added * data_share), dirty, drop, rng)
        row: dict[str, object] = {
            "file": f"vm{i:05d}.mig",
            "qemu": base.qemu,
            "machine": base.machine,
            "base": base.name,
            "ram_mib": max(ram, 16),
            "dropped": drop,
            "corrupt": None,
        }
        if i in bad:
            kind = CORRUPTIONS[sorted(bad).index(i) % len(CORRUPTIONS)]
            body = _corrupt(kind, body, base, rng)
            row["corrupt"] = kind
        _write_file(folder / str(row["file"]), body)
        rows.append(row)
    _write_file(folder / "manifest.json", (json.dumps({"streams": rows}, indent=1) + "\n").encode())
    return rows


def _write_file(path: Path, body: bytes) -> None:
    with atomic_output(path) as out:
        out.write(body)
