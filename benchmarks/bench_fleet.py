"""Fleet index throughput with 1 and 2 workers (issue 15, section 3).

Makes a synthetic fleet of ~2 MB device-heavy streams (the real data/ streams with the most
devices -- net, storage, usb, virtio, pcie, misc, audio -- given 64 MiB of RAM and some
data pages, see miglab.fleet.synthetic), then indexes it into a fresh dataset with Dask's
local ``processes`` scheduler, 1 and 2 workers side by side, ``--repeat`` times each.
Every run is a fresh Python process, so worker start-up (the fork server's imports, the
forks) is paid by every run, as by ``miglab index``.  Figures, medians over the runs:

* wall rate: streams per second, start-up included (goal: >= 40/s with 2 workers);
* CPU per stream: worker CPU time / streams, which load on the machine inflates far less
  than wall time;
* start-up: CPU of a fresh process importing what the fork server imports;
* rate on idle cores: what the wall rate would be with the cores to ourselves:
  streams / (start-up + streams x CPU per stream / workers);
* peak RSS of a worker (bounded: one batch of at most BATCH_FILES files in memory);
* the load average before each run, since the cores are shared.

Usage: ``python benchmarks/bench_fleet.py [--count 200] [--repeat 3] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEAVY = ["-net", "-storage", "-usb", "-virtio", "-pcie", "-misc", "-audio"]

_RUN = """
import json, sys
from miglab.fleet.indexing import index
r = index([sys.argv[1]], sys.argv[2], scheduler="processes", workers=int(sys.argv[3]))
print(json.dumps({"n": r.indexed, "errors": r.errors, "wall": r.seconds,
                  "cpu": r.cpu_seconds, "rss": r.peak_rss}))
"""


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def _one(streams: Path, out: Path, workers: int) -> dict[str, float]:
    """One index run in a fresh interpreter."""
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(streams), str(out), str(workers)],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    )
    return {**json.loads(done.stdout.splitlines()[-1]), "load": load}


def _startup_cpu() -> float:
    """CPU seconds of a fresh process importing what the fork server preloads."""
    from miglab.fleet.indexing import _PRELOAD

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = "; ".join(f"import {m}" for m in _PRELOAD)
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> int:
    from miglab.fleet.indexing import BATCH_FILES
    from miglab.fleet.synthetic import make_fleet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="streams in the fleet")
    ap.add_argument("--repeat", type=int, default=3, help="runs per worker count")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-fleet-"))
    streams = work / "streams"
    if not (streams / "manifest.json").exists() or len(list(streams.glob("*.mig"))) != args.count:
        shutil.rmtree(streams, ignore_errors=True)
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
        f"{os.cpu_count()} CPUs, {args.repeat} runs per worker count, each a fresh process"
    )
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    startups = []
    for i in range(args.repeat):
        startups.append(_startup_cpu())
        for workers in (1, 2):  # side by side, under the same load
            r = _one(streams, work / f"dataset-{workers}", workers)
            runs[workers].append(r)
            print(
                f"  run {i + 1}, {workers} worker(s): {r['n'] / r['wall']:5.1f} streams/s wall, "
                f"{r['cpu'] / r['n'] * 1e3:5.1f} ms CPU/stream, load average {r['load']:.1f}"
            )
    startup = statistics.median(startups)
    print(f"start-up (fork server imports, fresh process): {startup:.2f} s CPU (median)")
    for workers, rs in runs.items():
        n = rs[0]["n"]
        wall = statistics.median(r["n"] / r["wall"] for r in rs)
        per = statistics.median(r["cpu"] / r["n"] for r in rs)
        idle = n / (startup + n * per / workers)
        print(
            f"{workers} worker(s): {wall:6.1f} streams/s wall, {per * 1e3:5.1f} ms CPU/stream "
            f"-> {idle:6.1f} streams/s on idle cores (start-up included), "
            f"peak worker RSS {max(r['rss'] for r in rs) / 2**20:.0f} MiB "
            f"(batches <= {BATCH_FILES} files), {int(max(r['errors'] for r in rs))} errors, "
            f"load average {min(r['load'] for r in rs):.1f}-{max(r['load'] for r in rs):.1f}"
        )
    if args.dir is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
