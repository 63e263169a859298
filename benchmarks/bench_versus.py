"""Two checkouts of miglab side by side: the speed figures of issue 13 section 6.

Issue 13 asks that the one-walk rebuild leaves ``benchmarks/``'s figures no
worse: load + full decode of the most device-heavy stream, RAM indexing
throughput and encoder MB/s, printed before and after.  On a shared machine
two runs minutes apart are not comparable, so this script runs both trees in
the same session, alternately, each figure in a fresh child process with that
tree first on ``sys.path``:

* ``heavy``: ``load`` + ``fields_frame`` of the most device-heavy stream in
  ``data/`` (by field count), thread CPU time, minimum and median of 30 after
  3 warm-ups;
* ``ram``: ``load`` + ``ram_frame`` of a 1 GiB stream of random RAM (made once
  by the *after* tree's synthetic generator, read once into the page cache),
  GB/s of wall-clock and of CPU time (user + system), best of 3;
* ``enc``: encode and decode of every stream in ``data/`` through legacy,
  MessagePack, CBOR and JSON (the public ``miglab.encoders`` API both trees
  have), CPU time, MB/s of legacy bytes, after one untimed pass of every
  format: the first call imports the codecs and numpy and expands the RAM
  index columns, one-time work that ``load`` did itself before the start-up
  work of issue 14, so timed first calls charged it to whichever format came
  first (the MessagePack encode).

Both trees read the same files: the streams of the *before* tree's ``data/``
(a newer tree reads more kinds, not fewer).  The figures
are medians over ``--rounds`` alternations, with the load average beside them.

Usage: ``python benchmarks/bench_versus.py --before DIR --after DIR [--rounds 3]
[--only heavy,ram,enc]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import gc, json, sys, time
from pathlib import Path
import miglab
from miglab.analysis.frames import fields_frame, ram_frame
from miglab import encoders

what, data, ram = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
out = {}
if what == "heavy":
    streams = sorted(data.glob("*.mig"))
    sizes = {p: len(fields_frame(miglab.load(p))) for p in streams}
    heavy = max(sizes, key=lambda p: (sizes[p], p.name))
    times = []
    for i in range(33):
        t = time.thread_time()
        fields_frame(miglab.load(heavy))
        if i >= 3:
            times.append(time.thread_time() - t)
    times.sort()
    out = {"stream": heavy.name, "fields": sizes[heavy], "min_ms": times[0] * 1e3,
           "median_ms": times[len(times) // 2] * 1e3}
elif what == "ram":
    size = Path(ram).stat().st_size
    best = cpu = 0.0
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        ram_frame(miglab.load(ram))
        best = max(best, size / (time.perf_counter() - t) / 1e9)
        cpu = max(cpu, size / (time.process_time() - c) / 1e9)
    out = {"gb_s": best, "cpu_gb_s": cpu}
else:
    streams = [miglab.load(p) for p in sorted(data.glob("*.mig"))]
    total = sum(len(s.to_bytes()) for s in streams)
    gc.disable()
    for fmt in ("legacy", "msgpack", "cbor", "json"):  # once untimed: imports, first-use work
        for s in streams:
            encoders.decode(encoders.encode(s, fmt), fmt)
    for fmt in ("legacy", "msgpack", "cbor", "json"):
        t = time.process_time()
        blobs = [encoders.encode(s, fmt) for s in streams]
        enc = time.process_time() - t
        t = time.process_time()
        for b in blobs:
            encoders.decode(b, fmt)
        dec = time.process_time() - t
        out[fmt] = {"enc_mb_s": total / enc / 1e6, "dec_mb_s": total / dec / 1e6,
                    "size": sum(map(len, blobs)) / total}
print(json.dumps(out))
"""


def child(tree: Path, what: str, data: Path, ram: Path) -> dict:
    """One figure measured by ``tree`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(data), str(ram)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
    )
    return json.loads(done.stdout.splitlines()[-1])


def make_ram(after: Path, path: Path) -> None:
    """A 1 GiB random-RAM stream written by the *after* tree's generator."""
    code = (
        "import sys; from pathlib import Path; from miglab.stream.synthetic import write_synthetic;"
        "write_synthetic(Path(sys.argv[1]), ram_bytes=1 << 30, mix={'random': 1.0}, seed=1, passes=1)"
    )
    env = dict(os.environ, PYTHONPATH=str(after))
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True)
    with path.open("rb", buffering=0) as fh:
        while fh.read(16 << 20):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="checkout of the older tree")
    parser.add_argument("--after", type=Path, required=True, help="checkout of the newer tree")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two trees")
    parser.add_argument(
        "--only", default="heavy,ram,enc", help="figures to measure (heavy, ram, enc)"
    )
    args = parser.parse_args()
    only = [w for w in ("heavy", "ram", "enc") if w in args.only.split(",")]
    data = args.before / "data"
    runs: dict[tuple[str, str], list[dict]] = {}
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench-versus-") as tmp:
        ram = Path(tmp) / "random-1G.mig"
        make_ram(args.after, ram)
        for _ in range(args.rounds):
            for what in only:
                for side, tree in (("before", args.before), ("after", args.after)):
                    loads.append(os.getloadavg()[0])
                    runs.setdefault((what, side), []).append(child(tree, what, data, ram))
    med = statistics.median
    print(f"before = {args.before}, after = {args.after}, {args.rounds} alternations")
    print(f"load average (1 min) during the runs: {min(loads):.1f} .. {max(loads):.1f}")
    if "heavy" in only:
        _print_heavy(runs)
    if "ram" in only:
        print("\nload + ram_frame of 1 GiB random RAM, GB/s (best of 3, median over rounds)")
        for side in ("before", "after"):
            rows = runs["ram", side]
            print(
                f"  {side:6s}  wall {med(r['gb_s'] for r in rows):6.2f}"
                f"  CPU {med(r['cpu_gb_s'] for r in rows):6.2f}"
            )
    if "enc" in only:
        _print_enc(runs)


def _print_heavy(runs: dict[tuple[str, str], list[dict]]) -> None:
    med = statistics.median
    heavy = runs["heavy", "after"][0]
    print(f"\nload + fields_frame of {heavy['stream']} ({heavy['fields']} fields), thread CPU ms")
    for side in ("before", "after"):
        rows = runs["heavy", side]
        print(
            f"  {side:6s}  min {med(r['min_ms'] for r in rows):6.1f}"
            f"  median {med(r['median_ms'] for r in rows):6.1f}"
        )


def _print_enc(runs: dict[tuple[str, str], list[dict]]) -> None:
    med = statistics.median
    print("\nencoders on every data/ stream, CPU-time MB/s of legacy bytes (size x legacy)")
    print(
        f"  {'format':8s} {'before enc':>10s} {'after enc':>10s} {'before dec':>10s} {'after dec':>10s}"
        f" {'size before':>11s} {'size after':>10s}"
    )
    for fmt in ("legacy", "msgpack", "cbor", "json"):
        b = [r[fmt] for r in runs["enc", "before"]]
        a = [r[fmt] for r in runs["enc", "after"]]
        print(
            f"  {fmt:8s} {med(r['enc_mb_s'] for r in b):10.1f} {med(r['enc_mb_s'] for r in a):10.1f}"
            f" {med(r['dec_mb_s'] for r in b):10.1f} {med(r['dec_mb_s'] for r in a):10.1f}"
            f" {med(r['size'] for r in b):11.3f} {med(r['size'] for r in a):10.3f}"
        )


if __name__ == "__main__":
    main()
