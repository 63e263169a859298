"""Big guests (issue 14, section 2): the commands on 1, 4 and 16 GiB synthetic streams.

Each stream is made by :func:`miglab.stream.synthetic.write_synthetic` with a
mixed page set (half zero pages, a quarter random, a quarter one repeated
page) and three RAM passes (the later ones resend a quarter of the pages),
read once so that it sits in the page cache, then every command runs as a
whole process (``/usr/bin/time`` gives the peak RSS):

    inspect, verify, convert --to legacy, compat (to QEMU 10.0), extract

The table gives size, seconds, GB/s of stream and peak RSS for each, with
the CPU seconds (user + system) and the 1-minute load average beside them:
on a loaded machine the wall clock shows the load, the CPU time the work.  The
goals are time linear in size, peak memory flat (<= 150 MB at 16 GiB) and
``verify`` of 16 GiB at >= 2 GB/s.  Outputs are deleted after each command
and the stream after its size (``df -h`` first: 16 GiB needs about 30 GB).

With ``--keep`` the streams stay in ``--work`` and a later run uses them
again (they are made with the same seed, so the same bytes).  With
``--against DIR`` (another checkout of miglab, e.g. a detached worktree of
main) every run of a command is paired with one of DIR's code on the same
stream, alternately, and both rows are printed with the CPU ratio: on a
shared machine that is the comparison that holds.

Usage: ``python benchmarks/bench_big.py [--sizes 1,4,16] [--work DIR] [--repeat 1] [--keep]
[--only verify,inspect] [--against DIR]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_cli import MIGLAB, run_timed  # noqa: E402

COMPAT_TO = ("--to-qemu", "10.0", "--machine", "pc-q35-7.2")
MIX = {"zero": 0.5, "random": 0.25, "repeated": 0.25}
PASSES = 3


def commands(stream: Path, out: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of every command measured; ``out`` is where outputs go."""
    return [
        ("inspect", [*MIGLAB, "inspect", str(stream)]),
        ("verify", [*MIGLAB, "verify", str(stream)]),
        (
            "convert --to legacy",
            [*MIGLAB, "convert", str(stream), "-o", str(out), "--to", "legacy"],
        ),
        (
            "compat --to-qemu 10.0",
            [*MIGLAB, "compat", str(stream), "-o", str(out), *COMPAT_TO],
        ),
        ("extract", [*MIGLAB, "extract", str(stream), "-o", str(out), "--no-progress"]),
    ]


def warm(path: Path) -> float:
    """Read the file once (into the page cache); returns the seconds it took."""
    t = time.perf_counter()
    with path.open("rb", buffering=0) as fh:
        while fh.read(16 << 20):
            pass
    return time.perf_counter() - t


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def bench(
    work: Path,
    sizes: list[int],
    repeat: int,
    keep: bool = False,
    only: set[str] | None = None,
    against: Path | None = None,
) -> None:
    from miglab.stream.synthetic import write_synthetic

    print(
        f"{'command':24s} {'GiB':>4s} {'stream GB':>9s} {'seconds':>8s} {'GB/s':>6s} {'peak MB':>8s}"
        f" {'CPU s':>7s} {'CPU GB/s':>8s} {'load':>5s}"
    )
    table: dict[str, list[tuple[int, float, float, float]]] = {}
    for gib in sizes:
        stream = work / f"synthetic-{gib}G.mig"
        t = time.perf_counter()
        if not (keep and stream.exists()):
            write_synthetic(stream, ram_bytes=gib << 30, mix=MIX, seed=gib, passes=PASSES)
        made = time.perf_counter() - t
        size = stream.stat().st_size
        print(
            f"# {stream.name}: {size / 1e9:.2f} GB made in {made:.0f} s, read in {warm(stream):.1f} s"
        )
        out = work / "out"
        try:
            for name, argv in commands(stream, out):
                if only and name.split()[0] not in only:
                    continue
                codes = {"": ROOT} if against is None else {"before": against, "this": ROOT}
                runs: dict[str, list[tuple[float, float, int, float]]] = {c: [] for c in codes}
                for _ in range(repeat):
                    for label, code in codes.items():
                        runs[label].append(run_timed(argv, work, code))
                        remove(out)
                cpus = {}
                for label, timed in runs.items():
                    secs = statistics.median(r[0] for r in timed)
                    peak = statistics.median(r[1] for r in timed)
                    status = max(r[2] for r in timed)
                    cpus[label] = cpu = statistics.median(r[3] for r in timed)
                    load = os.getloadavg()[0]
                    if label != "before":
                        table.setdefault(name, []).append((gib, secs, size / secs / 1e9, peak))
                    note = f"  (exit {status})" if status else ""
                    title = f"{name} ({label})" if label else name
                    print(
                        f"{title:24s} {gib:4d} {size / 1e9:9.2f} {secs:8.2f} {size / secs / 1e9:6.2f} "
                        f"{peak:8.1f} {cpu:7.2f} {size / cpu / 1e9:8.2f} {load:5.1f}{note}",
                        flush=True,
                    )
                if against is not None:
                    print(f"  {name}: CPU this/before {cpus['this'] / cpus['before']:.2f}")
        finally:
            remove(out)
            if not keep:
                stream.unlink()
    print("per command: seconds per GiB at each size (linear: equal), peak MB (flat: equal)")
    for name, rows in table.items():
        per = "  ".join(f"{gib}G {secs / gib:.2f}" for gib, secs, _, _ in rows)
        peaks = "  ".join(f"{gib}G {peak:.0f}" for gib, _, _, peak in rows)
        print(f"  {name:24s} s/GiB: {per}   peak MB: {peaks}")
    last = max(sizes)
    if "verify" in table:
        verify_rate = next(rate for gib, _, rate, _ in table["verify"] if gib == last)
        print(f"verify of {last} GiB: {verify_rate:.2f} GB/s (goal >= 2 GB/s at 16 GiB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,4,16", help="GiB of guest RAM, comma-separated")
    parser.add_argument("--work", type=Path, help="where the streams go (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per command (median kept)")
    parser.add_argument("--keep", action="store_true", help="keep the streams in --work for reuse")
    parser.add_argument(
        "--only", help="comma-separated first words of the commands to run (e.g. verify,inspect)"
    )
    parser.add_argument(
        "--against", type=Path, help="another miglab checkout, run alternately with this one"
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    only = set(args.only.split(",")) if args.only else None
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        bench(args.work, sizes, args.repeat, args.keep, only, args.against)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
            bench(Path(tmp), sizes, args.repeat, only=only, against=args.against)


if __name__ == "__main__":
    main()
