"""Added downtime of a live move across releases through ``miglab proxy``, several trees in one run.

The migrations are :func:`bench_proxy.migrate_once`'s (a firmware guest with ``--gib`` GiB of
non-zero RAM on QEMU ``--qemu``'s newest q35 machine, loopback TCP, ``python -m miglab proxy
--once`` as a separate process, the destination's RAM a populated ``/dev/shm`` file): per
round one direct migration ``--to-qemu`` -> ``--to-qemu`` and one through the proxy of each
``--tree`` (say the base commit unpacked by ``git archive``, and this checkout), converted
for ``--to-qemu``, in turn, so load drifts hit them alike.  Printed: the median downtime
(the source's ``downtime`` plus the destination's lag to ``completed``, polled every 20 ms)
of each, the added downtime against the direct median, min and max of the proxied runs, and
the load average (1 min) before and after.

Usage::

    python benchmarks/bench_downtime.py --to-qemu 7.2 --tree /tmp/base --tree . --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_proxy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qemu", default="10.0", choices=sorted(bench_proxy.MACHINES))
    parser.add_argument("--to-qemu", default="7.2", choices=sorted(bench_proxy.MACHINES))
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tree", action="append", type=Path, help="checkout(s) whose proxy runs")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree or [bench_proxy.ROOT]]
    src, dst, gib = args.qemu, args.to_qemu, args.gib
    load0 = os.getloadavg()[0]
    print(f"QEMU {src} -> proxy -> QEMU {dst} against direct {dst} -> {dst}, {gib} GiB, "
          f"medians of {args.repeat}; load average {load0:.1f} before")  # fmt: skip
    direct: list[float] = []
    proxied: dict[Path, list[float]] = {t: [] for t in trees}
    with (
        tempfile.TemporaryDirectory(prefix="miglab-bench-downtime-") as tmp,
        tempfile.TemporaryDirectory(prefix="miglab-bench-downtime-", dir="/dev/shm") as shm,
    ):
        ram, dst_ram = Path(tmp) / "ram", Path(shm) / "dst"
        bench_proxy._fill(ram, gib)
        bench_proxy.migrate_once(dst, ram, dst_ram, gib, proxy=False)  # populates dst_ram
        for _ in range(args.repeat):
            run = bench_proxy.migrate_once(dst, ram, dst_ram, gib, proxy=False)
            direct.append(run["downtime ms"])
            for tree in trees:
                bench_proxy.ROOT = tree  # the proxy process runs this tree's miglab
                time.sleep(0.5)
                run = bench_proxy.migrate_once(src, ram, dst_ram, gib, proxy=True, to_qemu=dst)
                proxied[tree].append(run["downtime ms"])
            time.sleep(0.5)
    base = statistics.median(direct)
    print(f"{'':>28} {'median ms':>9} {'added ms':>8} {'min':>5} {'max':>5}  runs")
    print(f"{f'direct {dst}':>28} {base:>9.0f} {'':>8} {min(direct):>5.0f} {max(direct):>5.0f}  "
          + " ".join(f"{x:.0f}" for x in direct))  # fmt: skip
    for tree, xs in proxied.items():
        med = statistics.median(xs)
        print(f"{str(tree)[-28:]:>28} {med:>9.0f} {med - base:>+8.0f} {min(xs):>5.0f} "
              f"{max(xs):>5.0f}  " + " ".join(f"{x:.0f}" for x in xs))  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
