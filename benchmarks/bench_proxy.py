"""Live migration through ``miglab proxy`` against a direct one, same QEMU build, same run.

A guest with 1 GiB (and 4 GiB) of non-zero RAM -- its RAM is a private mapping of a file
filled with a repeated random MiB, so every page is sent whole -- runs its firmware on QEMU
``--qemu`` (TCG) and is migrated live over loopback TCP, alternately straight to the
destination's ``-incoming`` and through ``python -m miglab proxy --once`` (a separate
process, so its peak RSS is its own).  ``max-bandwidth`` is lifted so the link, not QEMU's
rate limit, decides.  Printed per guest size, medians of ``--repeat`` runs of each:

* throughput: RAM bytes QEMU transferred / the source's ``total-time``, direct and proxied,
  and their ratio;
* downtime: the source's ``downtime`` (ms, stop to its last byte sent) plus the time the
  destination took after that to report ``completed`` (polled every 20 ms on both sides),
  direct and proxied, and the difference;
* the proxy's peak RSS (MiB, ``ru_maxrss`` of the proxy process) and its CPU seconds
  (user + system) per GB transferred: what the proxy would need of a free core (on a
  loaded machine the proxied throughput is bounded by the CPU time the proxy gets).

Usage: ``python benchmarks/bench_proxy.py [--qemu 10.0] [--sizes 1,4] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miglab.qemu._process import POLL_SECONDS, Guest, quit_qemu, run_bounded  # noqa: E402
from miglab.qemu.runner import find_qemu  # noqa: E402

MACHINES = {"5.2": "pc-q35-5.2", "7.2": "pc-q35-7.2", "10.0": "pc-q35-10.0", "11.1": "pc-q35-11.1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fill(path: Path, gib: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        for _ in range(gib << 10):
            fh.write(block)


def _vm(qemu: str, machine: str, ram: Path, gib: int, *extra: str) -> list[str]:
    return find_qemu(qemu).command(
        "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", machine,
        "-m", f"{gib}G",
        "-object", f"memory-backend-file,id=mem0,size={gib}G,mem-path={ram},share=off",
        "-machine", "memory-backend=mem0",
        *extra,
    )  # fmt: skip


def migrate_once(qemu: str, ram: Path, gib: int, *, proxy: bool) -> dict[str, float]:
    """One live migration; the source's figures (and the proxy's peak RSS)."""
    machine = MACHINES[qemu]
    binary = find_qemu(qemu)
    dport = _free_port()
    src_argv = _vm(qemu, machine, ram, gib)
    dst_argv = _vm(qemu, machine, ram, gib, "-incoming", f"tcp:127.0.0.1:{dport}")
    with Guest(src_argv, binary.env) as src, Guest(dst_argv, binary.env) as dst:
        proc: subprocess.Popen[str] | None = None
        target = dport
        if proxy:
            target = _free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "miglab", "proxy", "--once",
                 "--listen", f"tcp:127.0.0.1:{target}", "--connect", f"tcp:127.0.0.1:{dport}",
                 "--src-qemu", qemu, "--to-qemu", qemu, "--machine", machine],
                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            assert proc.stdout is not None
            proc.stdout.readline()  # "listening on ..."

        async def run() -> dict[str, Any]:
            s = await src.connect()
            d = await dst.connect()
            try:
                await asyncio.sleep(1.0)  # firmware starts; the guest is running
                await s.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
                await s.execute("migrate", {"uri": f"tcp:127.0.0.1:{target}"})
                done: dict[str, float] = {}
                while len(done) < 2:  # when each side first reports completed
                    for side, qmp in (("src", s), ("dst", d)):
                        if side in done:
                            continue
                        status = (await qmp.execute("query-migrate")).get("status")
                        if status == "completed":
                            done[side] = time.monotonic()
                        elif status in ("failed", "cancelled"):
                            raise RuntimeError(f"{side} migration {status}")
                    await asyncio.sleep(POLL_SECONDS)
                info = await s.execute("query-migrate")
                assert isinstance(info, dict)
                # The source's downtime ends when it has sent the last byte; the guest runs
                # again only once the destination has loaded it.
                info["lag ms"] = max(0.0, done["dst"] - done["src"]) * 1000
                return info
            finally:
                await quit_qemu(s)
                await quit_qemu(d)

        info = run_bounded(run(), 600, "bench migration")
        rss = cpu = 0.0
        if proc is not None:
            _, _, usage = os.wait4(proc.pid, 0)
            rss = usage.ru_maxrss / 1024
            cpu = usage.ru_utime + usage.ru_stime
            summary = proc.stdout.read() if proc.stdout else ""
            if "FAILED" in summary:
                raise RuntimeError(summary)
        seconds = info["total-time"] / 1000
        return {
            "MB/s": info["ram"]["transferred"] / seconds / 1e6,
            "downtime ms": float(info["downtime"]) + info["lag ms"],
            "rss MiB": rss,
            "cpu s/GB": cpu / (info["ram"]["transferred"] / 1e9),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qemu", default="10.0", choices=sorted(MACHINES))
    parser.add_argument("--sizes", default="1,4", help="guest RAM sizes in GiB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"QEMU {args.qemu}, {MACHINES[args.qemu]}, loopback TCP, medians of {args.repeat}")
    print(
        f"{'GiB':>4} {'direct MB/s':>12} {'proxy MB/s':>11} {'ratio':>6} "
        f"{'direct dt ms':>13} {'proxy dt ms':>12} {'added ms':>9} {'proxy RSS MiB':>14} "
        f"{'proxy CPU s/GB':>15}"
    )
    with tempfile.TemporaryDirectory(prefix="miglab-bench-proxy-") as tmp:
        for gib in (int(x) for x in args.sizes.split(",")):
            ram = Path(tmp) / f"ram-{gib}G"
            _fill(ram, gib)
            runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            for _ in range(args.repeat):
                for proxy in (False, True):  # alternated, so load drifts hit both alike
                    runs[proxy].append(migrate_once(args.qemu, ram, gib, proxy=proxy))
                    time.sleep(0.5)
            med = {p: {k: statistics.median(r[k] for r in runs[p]) for k in runs[p][0]}
                   for p in runs}  # fmt: skip
            d, p = med[False], med[True]
            print(
                f"{gib:>4} {d['MB/s']:>12.0f} {p['MB/s']:>11.0f} {p['MB/s'] / d['MB/s']:>6.2f} "
                f"{d['downtime ms']:>13.0f} {p['downtime ms']:>12.0f} "
                f"{p['downtime ms'] - d['downtime ms']:>9.0f} {p['rss MiB']:>14.1f} "
                f"{p['cpu s/GB']:>15.2f}",
                flush=True,
            )
            ram.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
