"""Time per ``miglab compat`` conversion of a live 128 MiB guest (issue 10, section 5).

For every ordered pair of the QEMU builds 5.2, 7.2, 10.0, 11.1 (each on its newest machine of
the family), the source's live capture of the heartbeat guest (``-m 128M``, from
:func:`miglab.qemu.capture_cache.cached_capture`: made once, then cached) is loaded, converted
with ``convert_stream(..., allow_guest_visible=True)`` and written back to bytes.  Printed per
pair: the medians of ``--repeat`` runs of load, convert and write, in seconds, and the stream
size; a conversion miglab refuses prints its reason instead.

Usage: ``python benchmarks/bench_compat.py [--repeat 3] [--family q35] [--set virtio]``
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import miglab  # noqa: E402
from miglab.compat import convert_stream  # noqa: E402
from miglab.errors import CompatError  # noqa: E402
from miglab.qemu.capture_cache import cached_capture  # noqa: E402

BUILDS = ("5.2", "7.2", "10.0", "11.1")


def bench_pair(src: str, dst: str, family: str, devices: str, repeat: int) -> str:
    """One line of figures for converting ``src``'s capture for ``dst``."""
    cap = cached_capture(src, f"pc-{family}-{src}", devices)
    size = cap.stream.stat().st_size
    load_s, convert_s, write_s = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        stream = miglab.load(cap.stream)
        t1 = time.perf_counter()
        try:
            out, _ = convert_stream(
                stream,
                to_qemu=dst,
                machine=f"pc-{family}-{dst}",
                from_qemu=src,
                allow_guest_visible=True,
            )
        except CompatError as exc:
            return f"refused: {exc}"
        t2 = time.perf_counter()
        out.to_bytes()
        t3 = time.perf_counter()
        load_s.append(t1 - t0)
        convert_s.append(t2 - t1)
        write_s.append(t3 - t2)
    med = statistics.median
    return (
        f"load {med(load_s):6.3f} s  convert {med(convert_s):6.3f} s  "
        f"write {med(write_s):6.3f} s  ({size / 2**20:.1f} MiB stream)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--family", choices=("q35", "i440fx"), default="q35")
    parser.add_argument("--set", choices=("virtio", "legacy"), default="virtio")
    args = parser.parse_args()
    print(f"128 MiB heartbeat guest, pc-{args.family}, {args.set} set, median of {args.repeat}")
    for src, dst in itertools.permutations(BUILDS, 2):
        line = bench_pair(src, dst, args.family, args.set, args.repeat)
        print(f"{src:>5} -> {dst:<5} {line}", flush=True)


if __name__ == "__main__":
    main()
