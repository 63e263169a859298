"""ASN.1 sizes and speeds on every stream in data/: legacy bytes, PER and BER bytes, ratios.

    python benchmarks/bench_asn1_size.py [--repeat 3] [--only GLOB,...] [--formats asn1-per,asn1-ber]

For each ``data/*.mig`` stream: QEMU's own (legacy) size, the ``asn1-per`` and
``asn1-ber`` sizes and their ratio to legacy, the median encode and decode
time of ``--repeat`` runs, and whether decoding gives back the legacy bytes
exactly (``exact``).  Then the totals, and MB/s of legacy bytes over all
streams, and the largest ratio.  asn1tools is pure Python, so this takes minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from miglab import encoders
from miglab.stream.reader import load

DATA = Path(__file__).resolve().parents[1] / "data"


def _median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", default="*.mig", help="comma-separated globs in data/")
    p.add_argument("--formats", default="asn1-per,asn1-ber")
    args = p.parse_args()
    formats = args.formats.split(",")
    paths = sorted({p for glob in args.only.split(",") for p in DATA.glob(glob)})
    head = f"{'stream':44} {'legacy':>9}"
    for f in formats:
        head += f" {f:>9} {'ratio':>6} {'enc s':>6} {'dec s':>6} exact"
    print(head)
    totals = {"legacy": 0, **{f: 0 for f in formats}}
    times = {f: [0.0, 0.0] for f in formats}
    bad = 0
    worst: dict[str, tuple[float, str]] = {f: (0.0, "") for f in formats}
    for path in paths:
        stream = load(path)
        raw = stream.to_bytes()
        totals["legacy"] += len(raw)
        line = f"{path.stem:44} {len(raw):9}"
        for f in formats:
            enc_s, data = _median_time(partial(encoders.encode, stream, f), args.repeat)
            kwargs = {}
            if getattr(encoders.get(f), "needs_schema", False):  # asn1-per before this branch
                from miglab.encoders.asn1 import schema_text

                kwargs["schema"] = schema_text(stream)
            dec_s, back = _median_time(partial(encoders.decode, data, f, **kwargs), args.repeat)
            exact = back.to_bytes() == raw
            bad += not exact
            totals[f] += len(data)
            worst[f] = max(worst[f], (len(data) / len(raw), path.stem))
            times[f][0] += enc_s
            times[f][1] += dec_s
            line += f" {len(data):9} {len(data) / len(raw):6.3f} {enc_s:6.2f} {dec_s:6.2f} {'yes' if exact else 'NO'}"
        print(line, flush=True)
    line = f"{'total (' + str(len(paths)) + ' streams)':44} {totals['legacy']:9}"
    for f in formats:
        line += f" {totals[f]:9} {totals[f] / totals['legacy']:6.3f} {times[f][0]:6.1f} {times[f][1]:6.1f}"
    print(line)
    mb = totals["legacy"] / 1e6
    for f in formats:
        enc, dec = times[f]
        print(
            f"{f}: encode {mb / enc:.2f} MB/s, decode {mb / dec:.2f} MB/s (legacy bytes, "
            f"medians of {args.repeat}); largest ratio {worst[f][0]:.3f} ({worst[f][1]})"
        )
    print(f"not exact: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
