"""How many single bit flips in the structural bytes of real streams miglab notices.

Structural bytes are the ones that frame the data, not the data: the file
header, the configuration block's type and length, section headers (type,
id, idstr, instance, version) and footers, RAM page words and block names
(and the MEM_SIZE block list), subsection headers, command headers, the EOF
byte and the vmdesc framing (0x06 and its length).  Page contents, device
field values and the vmdesc JSON text are not.

With ``--impossible`` the flips are instead the ones that make a field
impossible, each of which ``verify`` must catch (issue 17): a ``bool`` that is
no longer 0 or 1 (bits 1-7 of a bool's byte), a section version past its
description's (a 0 bit of the header's version set; not for the sections of legacy
handlers such as ``slirp``, which miglab's own model describes), a size in the vmdesc
that disagrees with the section's bytes (a digit of a ``"size"`` value turned
into another digit), and a length or count past its array (a high bit of a
field another field's size or element count is read from).

A flip counts as detected when ``miglab.load`` raises or
``miglab.stream.verify.verify`` reports an error that the unflipped stream does
not have (a pc <= 2.2 stream without vmdesc or footers always has one,
``end-guessed``, which says nothing of the flip).  Flips are sampled, the
same number from each category of each stream (seeded), and the rate is
printed per stream, per category and overall.

    python benchmarks/bitflip_detection.py                 # 120 flips per stream, 2 jobs
    python benchmarks/bitflip_detection.py --flips 1000 --jobs 4 --stream q72-pc-q35-7.2-default
    python benchmarks/bitflip_detection.py --impossible    # every miss is a bug
    python benchmarks/bitflip_detection.py --ids --stream q72-pc-i440fx-2.2-default

With ``--ids`` the flips are every bit of every START/FULL section header's section
id and instance id (not sampled): the numbering ``verify_sections`` checks.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import miglab
from miglab.errors import MiglabError
from miglab.findings import errors
from miglab.stream.model import CommandRecord
from miglab.stream.ram import RamPayload
from miglab.stream.reader import LEGACY_SECTIONS
from miglab.stream.verify import verify
from miglab.vmstate.sizing import SizingVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

DATA = Path(__file__).resolve().parents[1] / "data"


def structural(data: bytes) -> dict[str, list[int]]:
    """Byte offsets of each structural category in a stream."""
    s = miglab.load(data)
    cats: dict[str, list[int]] = defaultdict(list)
    cats["header"] += range(8)
    if s.configuration is not None:
        cats["header"] += range(8, 13)  # QEMU_VM_CONFIGURATION, be32 name length
    for rec in s.records:
        if isinstance(rec, CommandRecord):
            cats["command header"] += range(rec.offset, rec.offset + 5)
            continue
        head = 5 if not rec.kind.has_full_header else 5 + 1 + len(rec.name.encode()) + 8
        cats["section header"] += range(rec.offset, rec.offset + head)
        if rec.footer:
            end = rec.offset + rec.size
            cats["footer"] += range(end - 5, end)
        p = rec.payload
        if isinstance(p, RamPayload):
            _ram(p, cats)
        elif isinstance(p, VMState):
            _subsections(data, rec.offset + head, rec.offset + rec.size, p, cats)
    eof = len(data) - len(s.trailer)
    if s.vmdesc is not None:
        eof -= len(s.vmdesc_json()) + 5
        cats["vmdesc framing"] += range(eof, eof + 5)
    cats["eof"].append(eof - 1)
    return cats


def _ram(p: RamPayload, cats: dict[str, list[int]]) -> None:
    flags = p.flags.tolist()
    pos = p.pos.tolist()
    named = p.named.tolist()
    length = p.length.tolist()
    for i in range(len(flags)):
        start = pos[i]
        if named[i]:
            name = len(p.blocks[int(p.block[i])].name.encode())
            cats["ram block name"] += range(start - 1 - name, start)
            start -= 1 + name
        cats["ram page word"] += range(start - 8, start)
        if flags[i] & 0x4:  # MEM_SIZE: the block list is all structure
            cats["ram block list"] += range(pos[i], pos[i] + length[i])


def _subsections(data: bytes, lo: int, hi: int, state: VMState, cats: dict[str, list[int]]) -> None:
    for name, sub in state.subsections.items():
        raw = name.encode()
        at = data.find(bytes([5, len(raw)]) + raw, lo, hi)
        if at >= 0:
            cats["subsection header"] += range(at, at + 2 + len(raw) + 4)
            lo = at + 1
        _subsections(data, lo, hi, sub, cats)


def header_ids(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Every ``(byte offset, bit)`` of the section and instance ids of START/FULL headers."""
    cats: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for rec in miglab.load(data).sections:
        if rec.kind.has_full_header:
            inst = rec.offset + 6 + len(rec.name.encode())
            cats["section id"] += [(rec.offset + 1 + k, b) for k in range(4) for b in range(8)]
            cats["instance id"] += [(inst + k, b) for k in range(4) for b in range(8)]
    return cats


def impossible(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """``(byte offset, bit)`` flips that make a field impossible, by category."""
    s = miglab.load(data)
    cats: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for rec in s.records:
        if isinstance(rec, CommandRecord) or not rec.kind.has_full_header:
            continue
        head = 1 + 4 + 1 + len(rec.name.encode()) + 8
        # A legacy handler's section (slirp) is described by miglab's model of one version, not
        # by the stream: a later version is one miglab cannot read (a warning), not impossible.
        described = rec.name not in LEGACY_SECTIONS
        if (
            described
            and isinstance(rec.payload, VMState)
            and rec.payload.desc.version_id == rec.version_id
        ):
            at = rec.offset + head - 4  # be32 version: a 0 bit set gives a later version
            cats["section version"] += [
                (at + 3 - k // 8, k % 8) for k in range(32) if not rec.version_id >> k & 1
            ]
        if isinstance(rec.payload, VMState):
            v = SizingVisitor(offset=rec.offset + head)
            visit_vmstate(v, rec.payload.desc, rec.payload)
            counts = _count_names(rec.payload)
            for path, f, value, size, offset in v.leaves:
                if f.kind == "bool":
                    n = len(value) if isinstance(value, list) else 1
                    cats["bool"] += [(offset + i, b) for i in range(n) for b in range(1, 8)]
                elif f.kind == "int" and path.rsplit(".", 1)[-1] in counts and size:
                    cats["length past its array"] += [(offset, 7), (offset, 6)]  # top byte
    if s.configuration is not None:  # QEMU_VM_CONFIGURATION at 8, its state from 9
        v = SizingVisitor(offset=9)
        visit_vmstate(v, s.configuration.desc, s.configuration)
        counts = _count_names(s.configuration)
        for path, f, _value, size, offset in v.leaves:
            if f.kind == "int" and path.rsplit(".", 1)[-1] in counts and size:
                cats["length past its array"] += [
                    (offset + k, b) for k in range(2) for b in range(8)
                ]
    if s.vmdesc is not None:
        text_at = len(data) - len(s.trailer) - len(s.vmdesc_json())
        text = s.vmdesc_json()
        for m in re.finditer(rb'"size": ?([0-9]+)', text):
            for i in range(m.start(1), m.end(1)):
                digit = text[i] - 0x30
                cats["vmdesc size"] += [(text_at + i, b) for b in range(4) if (digit ^ 1 << b) <= 9]
    return cats


def _count_names(state: VMState) -> set[str]:
    """Names of fields another field's size or element count is read from."""
    out: set[str] = set()
    for f in state.desc.fields:
        out |= {n for n in (f.num_field, f.size_field) if n}
    for sub in state.subsections.values():
        out |= _count_names(sub)
    return out


Known = frozenset[tuple[str, int | None, str]]


def _errors(data: bytes) -> Known:
    return frozenset((f.code, f.offset, f.message) for f in errors(verify(data)))


def detected(data: bytes, known: Known = frozenset()) -> bool:
    """Whether load raises or verify reports an error not in ``known``."""
    try:
        miglab.load(data)
    except MiglabError:
        return True
    return bool(_errors(data) - known)


def _one(job: tuple[str, str, int, int]) -> tuple[str, str, int, int, bool]:
    name, cat, offset, bit = job
    raw, known = _DATA[name]
    data = bytearray(raw)
    data[offset] ^= 1 << bit
    return name, cat, offset, bit, detected(bytes(data), known)


_DATA: dict[str, tuple[bytes, Known]] = {}


def _init(names: list[str]) -> None:
    for n in names:
        raw = (DATA / f"{n}.mig").read_bytes()
        _DATA[n] = raw, _errors(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flips", type=int, default=120, help="flips per stream")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--stream", action="append", help="stream stem (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--impossible", action="store_true", help="flips making a field impossible")
    parser.add_argument("--ids", action="store_true", help="every bit of the header ids")
    args = parser.parse_args(argv)
    names = args.stream or sorted(p.stem for p in DATA.glob("*.mig"))
    rng = random.Random(args.seed)
    jobs = []
    for n in names:
        raw = (DATA / f"{n}.mig").read_bytes()
        if args.ids:
            jobs += [
                (n, cat, at, bit) for cat, where in header_ids(raw).items() for at, bit in where
            ]
            continue
        if args.impossible:
            flips = impossible(raw)
            per = max(1, args.flips // max(1, len(flips)))
            for cat, where in sorted(flips.items()):
                for at, bit in rng.sample(where, min(per, len(where))):
                    jobs.append((n, cat, at, bit))
            continue
        cats = structural(raw)
        per = max(1, args.flips // len(cats))
        for cat, offs in sorted(cats.items()):
            for _ in range(per):
                jobs.append((n, cat, rng.choice(offs), rng.randrange(8)))
    by_stream: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed: list[tuple[str, str, int, int]] = []
    with Pool(args.jobs, initializer=_init, initargs=(names,)) as pool:
        for n, cat, at, bit, hit in pool.imap_unordered(_one, jobs, chunksize=8):
            for table, key in ((by_stream, n), (by_cat, cat)):
                table[key][0] += hit
                table[key][1] += 1
            if not hit:
                missed.append((n, cat, at, bit))
    for title, table in (("stream", by_stream), ("category", by_cat)):
        print(f"{title:<40} detected / flips")
        for key, (hits, count) in sorted(table.items()):
            print(f"{key:<40} {hits:>5} / {count:<5} {100 * hits / count:6.2f}%")
        print()
    ok = sum(v[0] for v in by_stream.values())
    total = sum(v[1] for v in by_stream.values())
    what = "header id" if args.ids else "field-impossible" if args.impossible else "structural"
    print(f"overall: {ok} / {total} = {100 * ok / total:.2f}% of {what} single-bit flips detected")
    for n, cat, at, bit in sorted(missed)[:40]:
        print(f"missed: {n} {cat} byte {at} bit {bit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
