"""Wire formats compared: bytes and encode/decode MB/s on data/ and synthetic streams.

    python benchmarks/bench_encoders.py [--repeat 5] [--synthetic 64] [--chart encoders.png]
        [--formats legacy,cbor,...] [--csv rows.csv]

Prints, per format, the size ratio to QEMU's legacy stream and the median
MB/s (of legacy bytes) for the device state and for the whole stream, over
every stream in data/ plus a synthetic stream with the devices of the
biggest real one; then checks the issue's goals (best self-describing binary
format within 1.3x of legacy on device state, device-state encode and
decode >= 50 MB/s for the best format).
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
        row = candidates.loc[best]
        print(
            f"\ngoal 1: best self-describing binary format on device state: {best} "
            f"at {row['ratio']:.3f}x legacy (goal <= 1.3x): {'met' if row['ratio'] <= 1.3 else 'NOT met'}"
        )
        fastest = candidates["roundtrip_MBps"].idxmax()
        row = candidates.loc[fastest]
        ok = min(row["encode_MBps"], row["decode_MBps"]) >= 50
        print(
            f"goal 2: device state {fastest}: encode {row['encode_MBps']:.1f} MB/s, decode "
            f"{row['decode_MBps']:.1f} MB/s (goal >= 50 each): {'met' if ok else 'NOT met'}"
        )
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.chart:
        chart(df).savefig(args.chart, dpi=120)
        print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
