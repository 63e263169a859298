"""Wire formats compared: bytes and encode/decode MB/s on data/ and synthetic streams.

    python benchmarks/bench_encoders.py [--repeat 5] [--synthetic 64] [--chart encoders.png]
        [--formats legacy,cbor,...] [--csv rows.csv]
    python benchmarks/bench_encoders.py --device-cpu [--repeat 7] [--formats ...]

Prints, per format, the size ratio to QEMU's legacy stream and the median
MB/s (of legacy bytes) for the device state and for the whole stream, over
every stream in data/ plus a synthetic stream with the devices of the
biggest real one; then checks the goals of issue 14 section 3 on device
state: the best self-describing binary format within 1.05x of legacy size,
encode and decode >= 100 MB/s for MessagePack and CBOR and >= 50 MB/s for
JSON.  ``--synthetic 0`` leaves the synthetic stream out.

``--device-cpu`` prints only the goal's figure, in CPU time
(``time.process_time``, so a loaded machine matters less): the device state
of all data/ streams encoded and decoded as one batch per format, formats
interleaved run by run, medians of ``--repeat`` runs, MB/s of legacy bytes
and the speed relative to legacy's in the same run.  Decoding leaves a
tree's vmdesc unparsed until it is read (``Stream.defer_vmdesc``).  It uses only the public
encoder API, so the same file measures an older checkout put first on
``PYTHONPATH``, side by side.
"""

from __future__ import annotations

import argparse
import gc
import statistics
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


def _cpu_ms(fn: object, items: list[object]) -> float:
    gc.collect()
    t = time.process_time()
    for x in items:
        fn(x)  # type: ignore[operator]
    return (time.process_time() - t) * 1e3


def device_cpu(formats: list[str], repeat: int) -> None:
    """The device state of every data/ stream, per format: CPU ms, MB/s, x legacy."""
    from miglab.encoders.bench import device_state

    states = [device_state(load(p)) for p in sorted(DATA.glob("*.mig"))]
    legacy = [s.to_bytes() for s in states]
    n = sum(map(len, legacy))
    fmts = [encoders.get(f) for f in formats]
    data = {}
    for f in fmts:
        data[f.name] = [f.encode(s) for s in states]
        if [f.decode(d).to_bytes() for d in data[f.name]] != legacy:
            raise SystemExit(f"{f.name} does not round-trip")
    enc: dict[str, list[float]] = {f.name: [] for f in fmts}
    dec: dict[str, list[float]] = {f.name: [] for f in fmts}
    for _ in range(repeat):
        for f in fmts:
            enc[f.name].append(_cpu_ms(f.encode, states))  # type: ignore[arg-type]
            dec[f.name].append(_cpu_ms(f.decode, data[f.name]))  # type: ignore[arg-type]
    med = {k: (statistics.median(enc[k]), statistics.median(dec[k])) for k in enc}
    base = med.get("legacy")
    print(
        f"device state of {len(states)} data/ streams: {n / 1e6:.2f} MB legacy; CPU time, median of {repeat}"
    )
    print(
        f"{'format':8s} {'ratio':>6s} {'enc ms':>8s} {'enc MB/s':>9s} {'dec ms':>8s} {'dec MB/s':>9s}  x legacy enc / dec"
    )
    for k, (e, d) in med.items():
        size = sum(map(len, data[k])) / n
        rel = f"{base[0] / e:5.2f} / {base[1] / d:5.2f}" if base else ""
        print(f"{k:8s} {size:6.3f} {e:8.1f} {n / e / 1e3:9.1f} {d:8.1f} {n / d / 1e3:9.1f}  {rel}")


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--synthetic", type=int, default=64, metavar="MIB")
    p.add_argument("--formats")
    p.add_argument("--chart")
    p.add_argument("--csv")
    p.add_argument("--device-cpu", action="store_true")
    args = p.parse_args()
    if args.device_cpu:
        device_cpu(
            args.formats.split(",") if args.formats else ["legacy", "json", "cbor", "msgpack"],
            args.repeat,
        )
        return 0
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
