"""Fleet index throughput with 1 and 2 workers (issue 15, section 3).

Makes a synthetic fleet of ~2 MB device-heavy streams (the real data/ streams with the most
devices -- net, storage, usb, virtio, pcie, misc, audio -- given 64 MiB of RAM and some
data pages, see miglab.fleet.synthetic), then indexes it into a fresh dataset with Dask's
local ``processes`` scheduler and 1, then 2 workers.  Figures printed per run:

* wall rate: streams per second, pool start-up included (goal: >= 40/s with 2 workers);
* CPU per stream: worker CPU time / streams, which machine load does not inflate, and the
  rate the workers would reach on otherwise idle cores (workers / CPU per stream);
* peak RSS of a worker (bounded: one batch of at most BATCH_FILES files in memory).

Usage: ``python benchmarks/bench_fleet.py [--count 200] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miglab.fleet.indexing import BATCH_FILES, index  # noqa: E402
from miglab.fleet.synthetic import make_fleet  # noqa: E402

HEAVY = ["-net", "-storage", "-usb", "-virtio", "-pcie", "-misc", "-audio"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="streams in the fleet")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-fleet-"))
    streams = work / "streams"
    make_fleet(
        streams,
        args.count,
        data_dir=ROOT / "data",
        seed=3,
        ram_mib=[64],
        data_share=0.03,
        corrupt=0,
        drop_share=0,
        dirty_share=0,
        only=HEAVY,
    )
    sizes = [p.stat().st_size for p in streams.glob("*.mig")]
    print(
        f"fleet: {len(sizes)} streams, mean {sum(sizes) / len(sizes) / 1e6:.2f} MB, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for workers in (1, 2):
        out = work / f"dataset-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        r = index([streams], out, scheduler="processes", workers=workers, progress=False)
        per = r.cpu_seconds / r.indexed
        print(
            f"{workers} worker(s): {r.rate:6.1f} streams/s wall ({r.seconds:.1f} s), "
            f"{per * 1e3:5.1f} ms CPU/stream -> {workers / per:6.1f} streams/s on idle cores, "
            f"peak worker RSS {r.peak_rss / 2**20:.0f} MiB (batches <= {BATCH_FILES} files), "
            f"{r.errors} errors"
        )
    if args.dir is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
