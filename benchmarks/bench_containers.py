"""Container reading speed (issue 12, section 5).

Figures printed (medians of ``--repeat`` runs, each in a fresh process):

* ``miglab.load`` of a 1 GiB mapped-ram file made by real QEMU 10.0 from a
  guest whose RAM is a file of random bytes (every page present): GB/s of
  guest RAM indexed from page cache, and the process's peak memory (VmHWM,
  mapped file pages included), goal >= 2 GB/s with memory bounded as for
  bare streams;
* the same for a 1 GiB libvirt ``sparse`` image: the header and domain XML of a
  real one (libvirt 11.3's ``virsh save`` of the test guest,
  :func:`miglab.qemu.libvirt_saves.saved_by_libvirt`), then what QEMU 10.0 writes
  for the 1 GiB guest at ``file:PATH,offset=N``, as libvirt has it do;
* the same file converted to a sequential stream (``--to legacy``) and back,
  in seconds;
* ``miglab.load`` of the same RAM as a gzip- and a zstd-compressed sequential stream.

Usage: ``python benchmarks/bench_containers.py [--repeat 5] [--mib 1024] [--work DIR]``
(results of one run: ``benchmarks/results/s4-containers.txt``)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import miglab  # noqa: E402
from miglab.containers.mapped_ram import MappedRam  # noqa: E402
from miglab.qemu import find_qemu  # noqa: E402
from miglab.qemu.libvirt_saves import saved_by_libvirt  # noqa: E402
from miglab.qemu.saved import make_mapped_ram  # noqa: E402

_CHILD = """
import json, sys, time
import numpy, miglab
def once():
    t = time.perf_counter()
    s = miglab.load(sys.argv[1])
    pages = sum(len(p.payload) for p in s.sections if p.name == "ram")
    return time.perf_counter() - t, pages
first, pages = once()  # includes the imports miglab.load makes on first use
again, _ = once()
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps({"first": first, "seconds": again, "hwm_kib": hwm, "records": pages}))
"""


def _child(path: Path) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout)


def _median(path: Path, repeat: int) -> tuple[float, float, int, int]:
    """(indexing s, first load in a fresh process s, peak KiB, RAM records), medians."""
    _child(path)  # warm the page cache
    runs = [_child(path) for _ in range(repeat)]
    return (
        statistics.median(r["seconds"] for r in runs),
        statistics.median(r["first"] for r in runs),
        max(r["hwm_kib"] for r in runs),
        runs[0]["records"],
    )


def _libvirt_header() -> bytes:
    """The header and data (domain XML, cookie, padding) of a real libvirt 11.3 sparse image."""
    real = miglab.load(saved_by_libvirt("11.3", ["sparse"])["sparse"].image)
    info = real.container
    assert info.format.name == "SPARSE", info
    return info.header_bytes()


def _files(work: Path, mib: int) -> tuple[Path, Path]:
    """The mapped-ram file and the sparse image of a ``mib`` MiB random guest (kept in ``work``)."""
    mr, sparse = work / "random.mr", work / "random-sparse.img"
    if mr.is_file() and sparse.is_file():
        return mr, sparse
    backing = work / "random.bin"
    with backing.open("wb") as fh, open("/dev/urandom", "rb") as rnd:
        for _ in range(mib):
            fh.write(rnd.read(1 << 20))
    guest = (
        "-object",
        f"memory-backend-file,id=m,size={mib}M,mem-path={backing},share=off",
        "-machine",
        "memory-backend=m",
    )
    header = _libvirt_header()
    for path, offset in ((mr, 0), (sparse, len(header))):
        make_mapped_ram(
            find_qemu("10.0"),
            path,
            machine="pc-q35-10.0",
            memory=f"{mib}M",
            run_seconds=0.5,
            extra_args=guest,
            offset=offset,
            timeout=600,
        )
    with sparse.open("r+b") as fh:  # QEMU left the first N bytes a hole: libvirt's part
        fh.write(header)
    return mr, sparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the files here (and reuse them next time)"
    )
    parser.add_argument("--no-compressed", action="store_true", help="skip gzip and zstd")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="miglab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ram = args.mib << 20
    mr, sparse = _files(work, args.mib)
    print(
        f"== miglab.load of {args.mib} MiB of guest RAM, from page cache (median of {args.repeat})"
    )
    print("(indexing: a second load in the process; first: a fresh process's first load,")
    print(" with the imports miglab.load makes on first use; peak: VmHWM of the process)")
    for label, path in (("mapped-ram", mr), ("libvirt sparse", sparse)):
        sec, first, hwm, records = _median(path, args.repeat)
        print(
            f"{label + ':':16s}{sec:.3f} s  {ram / sec / 1e9:.2f} GB/s of guest RAM  "
            f"first {first:.3f} s ({ram / first / 1e9:.2f} GB/s)  {records} RAM records  "
            f"peak {hwm / 1024:.0f} MiB  ({path.stat().st_size} bytes)"
        )
    t = time.perf_counter()
    seq = miglab.save(miglab.load(mr), work / "random.mig", container=None)
    to_legacy = time.perf_counter() - t
    t = time.perf_counter()
    back = miglab.save(miglab.load(seq), work / "back.mr", container=MappedRam())
    to_mapped = time.perf_counter() - t
    same = back.read_bytes() == mr.read_bytes()
    print(
        f"--to legacy: {to_legacy:.2f} s   --to mapped-ram: {to_mapped:.2f} s   round trip exact: {same}"
    )
    sec, first, hwm, _ = _median(seq, args.repeat)
    print(
        f"sequential:     {sec:.3f} s  {ram / sec / 1e9:.2f} GB/s  first {first:.3f} s  "
        f"peak {hwm / 1024:.0f} MiB"
    )
    for codec, suffix in (("gzip", ".gz"), ("zstd", ".zst")):
        if args.no_compressed or shutil.which(codec) is None:
            continue
        packed = work / f"random.mig{suffix}"
        with seq.open("rb") as src, packed.open("wb") as dst:
            subprocess.run([codec, "-1", "-c"], stdin=src, stdout=dst, check=True)
        sec, first, hwm, _ = _median(packed, max(1, args.repeat // 2))
        print(
            f"{codec + ':':16s}{sec:.3f} s  {ram / sec / 1e9:.2f} GB/s  peak {hwm / 1024:.0f} MiB"
        )
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
