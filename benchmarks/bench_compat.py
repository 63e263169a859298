"""Time per ``miglab compat`` conversion of a running 128 MiB guest's live stream.

For each ordered pair of QEMU builds (newest q35 machines, the ``legacy`` device set, whose
every pair converts) it prints the median of ``--repeat`` runs of each stage: ``load`` (read
and index the ~85 MB stream: device sections decoded, RAM pages indexed last-wins),
``convert`` (:func:`miglab.compat.convert_stream`) and ``save`` (write the converted stream to
a file), and their sum.  Captures come from :func:`miglab.qemu.capture_cache.cached_capture`
(made once with real QEMU, then cached).

Usage: ``python benchmarks/bench_compat.py [--repeat 3] [--devices legacy] [--family q35]``
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miglab.compat import convert_stream  # noqa: E402
from miglab.qemu.capture_cache import cached_capture  # noqa: E402
from miglab.stream import load, save  # noqa: E402

BUILDS = ("5.2", "7.2", "10.0", "11.1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--devices", default="legacy")
    parser.add_argument("--family", default="q35")
    args = parser.parse_args()
    print(f"{'pair':>12} {'MB':>6} {'load s':>8} {'convert s':>10} {'save s':>8} {'total s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "out.mig"
        for src, dst in itertools.permutations(BUILDS, 2):
            cap = cached_capture(src, f"pc-{args.family}-{src}", args.devices)
            times: dict[str, list[float]] = {"load": [], "convert": [], "save": []}
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                stream = load(cap.stream)
                t1 = time.perf_counter()
                out, _ = convert_stream(
                    stream, to_qemu=dst, machine=f"pc-{args.family}-{dst}", from_qemu=src,
                    allow_guest_visible=True,
                )  # fmt: skip
                t2 = time.perf_counter()
                save(out, out_path)
                t3 = time.perf_counter()
                times["load"].append(t1 - t0)
                times["convert"].append(t2 - t1)
                times["save"].append(t3 - t2)
            med = {k: statistics.median(v) for k, v in times.items()}
            size = cap.stream.stat().st_size / 1e6
            print(
                f"{src + '->' + dst:>12} {size:6.1f} {med['load']:8.3f} {med['convert']:10.3f} "
                f"{med['save']:8.3f} {sum(med.values()):8.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
