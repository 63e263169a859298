"""How many single bit flips in the structural bytes of real streams miglab notices.

Structural bytes are the ones that frame the data, not the data: the file
header, the configuration block's type and length, section headers (type,
id, idstr, instance, version) and footers, RAM page words and block names
(and the MEM_SIZE block list), subsection headers, command headers, the EOF
byte and the vmdesc framing (0x06 and its length).  Page contents, device
field values and the vmdesc JSON text are not.

A flip counts as detected when ``miglab.load`` raises or
``miglab.stream.verify.verify`` reports an error.  Flips are sampled, the
same number from each category of each stream (seeded), and the rate is
printed per stream, per category and overall.

    python benchmarks/bitflip_detection.py                 # 120 flips per stream, 2 jobs
    python benchmarks/bitflip_detection.py --flips 1000 --jobs 4 --stream q72-pc-q35-7.2-default
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import miglab
from miglab.errors import MiglabError
from miglab.stream.model import CommandRecord
from miglab.stream.ram import RamPayload
from miglab.stream.verify import errors, verify
from miglab.vmstate.state import VMState

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


def detected(data: bytes) -> bool:
    """Whether load raises or verify reports an error."""
    try:
        miglab.load(data)
    except MiglabError:
        return True
    return bool(errors(verify(data)))


def _one(job: tuple[str, str, int, int]) -> tuple[str, str, bool]:
    name, cat, offset, bit = job
    data = bytearray(_DATA[name])
    data[offset] ^= 1 << bit
    return name, cat, detected(bytes(data))


_DATA: dict[str, bytes] = {}


def _init(names: list[str]) -> None:
    for n in names:
        _DATA[n] = (DATA / f"{n}.mig").read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flips", type=int, default=120, help="flips per stream")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--stream", action="append", help="stream stem (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    names = args.stream or sorted(p.stem for p in DATA.glob("*.mig"))
    rng = random.Random(args.seed)
    jobs = []
    for n in names:
        cats = structural((DATA / f"{n}.mig").read_bytes())
        per = max(1, args.flips // len(cats))
        for cat, offs in sorted(cats.items()):
            for _ in range(per):
                jobs.append((n, cat, rng.choice(offs), rng.randrange(8)))
    by_stream: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed: list[tuple[str, str]] = []
    with Pool(args.jobs, initializer=_init, initargs=(names,)) as pool:
        for n, cat, ok in pool.imap_unordered(_one, jobs, chunksize=8):
            for table, key in ((by_stream, n), (by_cat, cat)):
                table[key][0] += ok
                table[key][1] += 1
            if not ok:
                missed.append((n, cat))
    for title, table in (("stream", by_stream), ("category", by_cat)):
        print(f"{title:<40} detected / flips")
        for key, (ok, total) in sorted(table.items()):
            print(f"{key:<40} {ok:>5} / {total:<5} {100 * ok / total:6.2f}%")
        print()
    ok = sum(v[0] for v in by_stream.values())
    total = sum(v[1] for v in by_stream.values())
    print(
        f"overall: {ok} / {total} = {100 * ok / total:.2f}% of structural single-bit flips detected"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
