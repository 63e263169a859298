"""CPU time the proxy spends on the device state of a live move: the downtime it adds.

In a live migration the source stops the guest, sends its last RAM pass and then the device
sections; everything :class:`~miglab.live.pump.Pump` does from the first device section to
the end of the stream (decoding each section from the source build's descriptions,
converting, re-encoding what changed, rewriting the vmdesc trailer) delays the destination.
This replays the running test guest's live capture (the ``live`` device set on the source
build's newest q35 machine, :func:`~miglab.qemu.capture_cache.cached_capture`) through a
real ``Pump`` over in-memory sockets, as ``miglab proxy --once`` runs it: one fresh Python
process per run (so what is built on first use is paid as the proxy pays it: the capture is
decoded in the parent, to find where its device state starts, and not in the worker, whose
first decode is the pump's), the source build's descriptions parsed before the stream starts,
the stream fed in the proxy's receives (``inbound.CHUNK``).
The clock (``time.process_time`` of the process, and wall time) starts when the pump asks
for the first byte of the first device section -- it has forwarded everything before it --
and stops when the pump returns.

Printed per pair and tree: the median, min and max CPU ms of ``--repeat`` runs, the median
wall ms, the number of changes and the digests of the change report and of the bytes sent
to the destination (both must stay the same when the conversion is made faster).  With
several ``--tree`` checkouts (say the base commit unpacked by ``git archive`` and this one)
the runs alternate between them, so load drifts hit both alike.  ``--profile N`` prints
the top N functions (cumulative) of one run's device path instead.

Usage::

    python benchmarks/bench_pump_devices.py --pairs 10.0-7.2,11.1-5.2 --repeat 9
    python benchmarks/bench_pump_devices.py --tree /tmp/base --tree . --repeat 9
    python benchmarks/bench_pump_devices.py --pairs 11.1-5.2 --profile 40
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAIRS = "10.0-7.2,11.1-7.2,11.1-5.2,10.0-5.2,7.2-11.1,5.2-11.1"


class _Source:
    """The capture's bytes as a socket: ``recv_into`` starts the clock at ``mark``."""

    def __init__(self, data: bytes, mark: int) -> None:
        self.data, self.mark, self.pos = memoryview(data), mark, 0
        self.cpu = self.wall = 0.0

    def recv_into(self, buf: memoryview, n: int) -> int:
        if self.pos == self.mark and not self.cpu:
            self.cpu, self.wall = time.process_time(), time.perf_counter()
        end = min(self.pos + n, len(self.data))
        if self.pos < self.mark:
            end = min(end, self.mark)  # stop at the device state: the pump forwards up to it
        k = end - self.pos
        buf[:k] = self.data[self.pos : end]
        self.pos = end
        return k


class _Sink:
    """The destination: hashes what it is sent."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def sendall(self, data: Any) -> None:
        self.digest.update(data)


def _capture(src: str) -> tuple[str, int]:
    """The live capture of build ``src`` and the offset of its first device section (the first
    FULL section after the last RAM section), found by decoding it: in the parent, so the
    worker's first decode is the pump's."""
    from miglab.live import source_decoding
    from miglab.qemu.capture_cache import cached_capture
    from miglab.stream.model import Section, SectionKind
    from miglab.stream.reader import load

    cap = cached_capture(src, f"pc-q35-{src}", "live")
    decoding = source_decoding(src, f"pc-q35-{src}")
    records = load(cap.stream, schema=decoding.schema, descriptions=decoding.descriptions).records
    mark = next(
        r.offset
        for r in records
        if isinstance(r, Section) and r.kind is SectionKind.FULL and r.offset is not None
    )
    return str(cap.stream), mark


def _worker(src: str, dst: str, stream: str, mark: int, profile: int) -> dict[str, Any]:
    """One run in this process (the tree to use is first on ``sys.path``): the pump over
    ``stream``, timed from ``mark``."""
    from miglab.live import source_decoding
    from miglab.live.inbound import Window
    from miglab.live.pump import Pump

    data = Path(stream).read_bytes()
    decoding = source_decoding(src, f"pc-q35-{src}")  # as proxy_once: before the source comes
    source, sink = _Source(data, mark), _Sink()
    pump = Pump(
        Window(source, sink),  # type: ignore[arg-type]
        src_qemu=src,
        to_qemu=dst,
        machine=f"pc-q35-{dst}",
        allow_guest_visible=True,
        schema=decoding.schema,
        descriptions=decoding.descriptions,
    )
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        source_recv = source.recv_into

        def recv_into(buf: memoryview, n: int) -> int:
            if source.pos == mark and not source.cpu:
                prof.enable()
            return source_recv(buf, n)

        source.recv_into = recv_into  # type: ignore[method-assign]
        result = pump.run()
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(profile)
    else:
        result = pump.run()
    cpu, wall = time.process_time() - source.cpu, time.perf_counter() - source.wall
    changes = sorted(repr(c) for c in result.report.changes)
    return {
        "cpu ms": cpu * 1000,
        "wall ms": wall * 1000,
        "changes": len(changes),
        "report": hashlib.sha256("\n".join(changes).encode()).hexdigest()[:16],
        "out": sink.digest.hexdigest()[:16],
        "device bytes": len(data) - mark,
    }


def _run(tree: Path, pair: str, capture: tuple[str, int], profile: int = 0) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    stream, mark = capture
    cmd = [sys.executable, __file__, "--worker", pair, "--stream", stream, "--mark", str(mark),
           "--profile", str(profile)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=tree)
    if done.returncode:
        raise SystemExit(f"worker {pair} in {tree} failed:\n{done.stderr}")
    if profile:
        print(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=PAIRS)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--tree", action="append", type=Path, help="checkout(s) to compare")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    parser.add_argument("--mark", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        src, dst = args.worker.split("-")
        print(json.dumps(_worker(src, dst, args.stream, args.mark, args.profile)))
        return 0
    trees = [t.resolve() for t in args.tree or [ROOT]]
    sys.path.insert(0, str(ROOT))
    captures = {src: _capture(src) for src in {p.split("-")[0] for p in args.pairs.split(",")}}
    if args.profile:
        for pair in args.pairs.split(","):
            for tree in trees:
                print(f"== {pair} {tree}")
                _run(tree, pair, captures[pair.split("-")[0]], args.profile)
        return 0
    print(f"load average {os.getloadavg()[0]:.1f}; CPU ms of the device path, fresh process, "
          f"median of {args.repeat}")  # fmt: skip
    print(f"{'pair':>9} {'tree':>24} {'median':>7} {'min':>6} {'max':>6} {'wall':>6} "
          f"{'changes':>7}  {'report':16}  {'bytes out':16}")  # fmt: skip
    for pair in args.pairs.split(","):
        runs: dict[Path, list[dict[str, Any]]] = {t: [] for t in trees}
        for _ in range(args.repeat):
            for tree in trees:
                runs[tree].append(_run(tree, pair, captures[pair.split("-")[0]]))
        for tree in trees:
            rs = runs[tree]
            cpu = [r["cpu ms"] for r in rs]
            assert len({(r["report"], r["out"]) for r in rs}) == 1
            print(
                f"{pair:>9} {str(tree)[-24:]:>24} {statistics.median(cpu):>7.1f} "
                f"{min(cpu):>6.1f} {max(cpu):>6.1f} "
                f"{statistics.median(r['wall ms'] for r in rs):>6.1f} {rs[0]['changes']:>7}  "
                f"{rs[0]['report']:16}  {rs[0]['out']:16}",
                flush=True,
            )
        print(f"  (load average {os.getloadavg()[0]:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
