"""Load + full decode speed and peak memory (issue 2, section 7).

Figures printed (medians of ``--repeat`` runs, each in a fresh process for
memory so one run's pages do not flatter the next):

* ``miglab.fields_frame(load(...))`` on every real stream in data/ (goal: < 0.1 s
  on the most device-heavy one);
* ``miglab.ram_frame(load(...))`` on random-RAM streams of 256 MiB and 1 GiB (goal:
  >= 1 GB/s), made by real QEMU 7.2 with guest memory backed by a file of
  random bytes (or by ``miglab.stream.synthetic`` with ``--synthetic``);
* peak memory (VmHWM, the process's resident high-water mark, which counts
  mapped file pages too) for load + ram_frame of the 1 GiB stream (goal:
  < 150 MB).

Usage: ``python benchmarks/bench_load.py [--repeat 5] [--big-dir DIR] [--skip-big]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import miglab  # noqa: E402

_CHILD = """
import json, sys, time
import pandas, numpy, miglab
t = time.perf_counter()
s = miglab.load(sys.argv[1])
frame = miglab.ram_frame(s)
dt = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
base = int(sys.argv[2])
print(json.dumps({"seconds": dt, "hwm_kib": hwm, "pages": int(frame.pages.sum())}))
"""


def _baseline_kib() -> int:
    """VmHWM of a process that only imported pandas, numpy and miglab."""
    code = (
        "import pandas, numpy, miglab\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    )
    return int(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )


def bench_real(repeat: int) -> None:
    """load + fields_frame on every data/ stream."""
    print(
        "== miglab.fields_frame(load(...)) on the real streams in data/ (median of", repeat, "runs)"
    )
    rows = []
    for path in sorted((ROOT / "data").glob("*.mig"), key=lambda p: p.stat().st_size):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            n = len(miglab.fields_frame(miglab.load(path)))
            times.append(time.perf_counter() - t)
        rows.append((path.name, path.stat().st_size, n, statistics.median(times)))
    for name, size, n, med in rows:
        print(f"  {name:42s} {size / 1e6:6.2f} MB {n:5d} fields  {med * 1000:7.1f} ms")
    heavy = max(rows, key=lambda r: r[2])
    print(
        f"  most device-heavy: {heavy[0]} ({heavy[2]} fields): {heavy[3] * 1000:.1f} ms (goal < 100 ms)"
    )


def make_random_stream(out: Path, mib: int, work: Path, synthetic: bool) -> Path:
    """A stream of ``mib`` MiB of random guest RAM (real QEMU, or synthetic)."""
    if out.exists():
        return out
    if synthetic:
        from miglab.stream.synthetic import write_synthetic

        write_synthetic(out, ram_bytes=mib << 20, mix={"random": 1.0}, seed=0)
        return out
    from miglab.qemu import find_qemu

    backing = work / f"random-{mib}.bin"
    with backing.open("wb") as fh, open("/dev/urandom", "rb") as rnd:
        for _ in range(mib):
            fh.write(rnd.read(1 << 20))
    find_qemu("7.2").make_stream(
        out,
        machine="pc-q35-7.2",
        memory=f"{mib}M",
        extra_args=[
            "-object",
            f"memory-backend-file,id=m,size={mib}M,mem-path={backing},share=off",
            "-machine",
            "memory-backend=m",
        ],
        timeout=300,
    )
    backing.unlink()
    return out


def bench_big(repeat: int, work: Path, synthetic: bool) -> None:
    """ram_frame throughput and peak memory on 256 MiB and 1 GiB random-RAM streams."""
    base = _baseline_kib()
    print(
        f"== miglab.ram_frame(load(...)) on random-RAM streams (median of {repeat} runs, fresh process each)"
    )
    print(f"  baseline VmHWM after importing pandas+numpy+miglab: {base / 1024:.0f} MiB")
    for mib in (256, 1024):
        path = make_random_stream(work / f"random-{mib}M.mig", mib, work, synthetic)
        size = path.stat().st_size
        runs = []
        for _ in range(repeat):
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path), str(base)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            runs.append(json.loads(out.stdout))
        secs = statistics.median(r["seconds"] for r in runs)
        hwm = statistics.median(r["hwm_kib"] for r in runs) / 1024
        print(
            f"  {mib:5d} MiB stream ({size / 1e6:7.1f} MB): {secs:.3f} s = {size / secs / 1e9:.2f} GB/s "
            f"(goal >= 1 GB/s); peak RSS {hwm:.0f} MiB, {hwm - base / 1024:.0f} MiB above baseline "
            f"(goal < 150 MB for 1 GiB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--big-dir", type=Path, help="where to keep the big streams (default: a temp dir)"
    )
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument(
        "--synthetic", action="store_true", help="make big streams with miglab, not QEMU"
    )
    args = parser.parse_args()
    bench_real(args.repeat)
    if args.skip_big:
        return
    if args.big_dir:
        args.big_dir.mkdir(parents=True, exist_ok=True)
        bench_big(args.repeat, args.big_dir, args.synthetic)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            bench_big(args.repeat, Path(tmp), args.synthetic)


if __name__ == "__main__":
    main()
