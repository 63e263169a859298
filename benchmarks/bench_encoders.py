"""Wire formats compared: bytes and encode/decode MB/s on data/ and synthetic streams.

    python benchmarks/bench_encoders.py [--repeat 5] [--synthetic 64] [--chart encoders.png]
        [--formats legacy,cbor,...] [--csv rows.csv]

Prints, per format, the size ratio to QEMU's legacy stream and the median
MB/s (of legacy bytes) for the device state and for the whole stream, over
every stream in data/ plus a synthetic stream with the devices of the
biggest real one; then checks the goals of issue 14 section 3 on device
state: the best self-describing binary format within 1.05x of legacy size,
encode and decode >= 100 MB/s for MessagePack and CBOR and >= 50 MB/s for
JSON.  ``--synthetic 0`` leaves the synthetic stream out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from miglab import encoders
from miglab.cli.bench import synthetic
from miglab.encoders.bench import chart, measure, summary
from miglab.stream.reader import load

DATA = Path(__file__).resolve().parents[1] / "data"
MAX_RATIO = 1.05
MIN_MBPS = {"msgpack": 100.0, "cbor": 100.0, "json": 50.0}
SELF_DESCRIBING_BINARY = [
    n
    for n in encoders.names()
    if encoders.get(n).binary and encoders.get(n).self_describing and n not in ("legacy", "sized")
]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--synthetic", type=int, default=64, metavar="MIB")
    p.add_argument("--formats")
    p.add_argument("--chart")
    p.add_argument("--csv")
    args = p.parse_args()
    paths = sorted(DATA.glob("*.mig"))
    streams: dict[str, object] = {f.stem: f for f in paths}
    if args.synthetic:
        biggest = max(paths, key=lambda f: f.stat().st_size)
        streams[f"synthetic-{args.synthetic}MiB"] = synthetic(args.synthetic, load(biggest))
    formats = args.formats.split(",") if args.formats else None
    t = time.perf_counter()
    df = measure(streams, formats, repeat=args.repeat)  # type: ignore[arg-type]
    took = time.perf_counter() - t
    real = df[~df["stream"].str.startswith("synthetic")]
    print(
        f"{len(streams)} streams, {len(df['format'].unique())} formats, repeat={args.repeat}, {took:.0f} s\n"
    )
    print("data/ streams:")
    print(summary(real).to_string())
    synth = df[df["stream"].str.startswith("synthetic")]
    if len(synth):
        print("\nsynthetic:")
        print(summary(synth).to_string())
    dev = summary(real).loc["device"]
    candidates = dev.loc[[n for n in SELF_DESCRIBING_BINARY if n in dev.index]]
    if len(candidates):
        best = candidates["ratio"].idxmin()
        ratio = candidates.loc[best, "ratio"]
        print(
            f"\ngoal 1: best self-describing binary format on device state: {best} at "
            f"{ratio:.3f}x legacy (goal <= {MAX_RATIO}x): {'met' if ratio <= MAX_RATIO else 'NOT met'}"
        )
    for i, (name, goal) in enumerate(MIN_MBPS.items(), start=2):
        if name in dev.index:
            row = dev.loc[name]
            ok = min(row["encode_MBps"], row["decode_MBps"]) >= goal
            print(
                f"goal {i}: device state {name}: encode {row['encode_MBps']:.1f} MB/s, decode "
                f"{row['decode_MBps']:.1f} MB/s (goal >= {goal:.0f} each): {'met' if ok else 'NOT met'}"
            )
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.chart:
        chart(df).savefig(args.chart, dpi=120)
        print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
