"""Device-state decode speed: load + fields_frame, and legacy/msgpack/cbor MB/s.

    python benchmarks/bench_decode.py [--repeat 7]

Prints the median seconds of ``miglab.fields_frame(miglab.load(path))`` on the
three biggest streams in data/ (issue 2 goal: < 0.1 s), then the device-state
table of :func:`miglab.encoders.bench.measure` for legacy, msgpack and cbor
(issue 5 goal: >= 50 MB/s encode and decode for the best format).  The
profile-guided fast paths these figures watch are compiled layouts
(:mod:`miglab.vmstate.layout`) and the plain-tree plans (:mod:`miglab.encoders.tree`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import miglab
from miglab.encoders.bench import measure, summary

DATA = Path(__file__).resolve().parents[1] / "data"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    paths = sorted(DATA.glob("*.mig"), key=lambda f: f.stat().st_size)
    for path in paths[-3:]:
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            miglab.fields_frame(miglab.load(path))
            times.append(time.perf_counter() - t)
        print(f"load+fields_frame {path.name}: {statistics.median(times):.4f} s (median)")
    df = measure(paths, ["legacy", "msgpack", "cbor"], repeat=args.repeat)
    print("\ndevice state, all data/ streams (MB/s of legacy bytes, medians):")
    print(summary(df).loc["device"].to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
