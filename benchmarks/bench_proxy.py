"""Live migration through ``miglab proxy`` against a direct one, same QEMU build, same run.

A guest with 1 GiB (and 4 GiB) of non-zero RAM -- its RAM is a private mapping of a file
filled with a repeated random MiB, so every page is sent whole -- runs its firmware on QEMU
``--qemu`` (TCG) and is migrated live over loopback TCP, alternately straight to the
destination's ``-incoming`` and through ``python -m miglab proxy --once`` (a separate
process, so its peak RSS is its own).  ``max-bandwidth`` is lifted so the link, not QEMU's
rate limit, decides.

The destination's RAM is a shared file in ``/dev/shm`` that one warm-up run has populated,
mapped with ``prealloc=on``, so the migration writes into RAM that is already there.  With
fresh anonymous RAM (``--fresh-destination``) the destination QEMU spends most of its time
in the kernel's first-touch page faults (``clear_page``): on the 2-core VM the benchmarks
run on that is ~4 CPU seconds per GiB, and it caps even a direct migration at ~100-150 MB/s.

Printed per guest size, medians of ``--repeat`` runs of each:

* throughput: RAM bytes QEMU transferred / the source's ``total-time``, direct and proxied,
  and their ratio;
* downtime: the source's ``downtime`` (ms, stop to its last byte sent) plus the time the
  destination took after that to report ``completed`` (polled every 20 ms on both sides),
  direct and proxied, and the difference;
* the proxy's peak RSS (MiB, ``ru_maxrss`` of the proxy process);
* CPU seconds (user + system) per GB transferred of the source QEMU, the destination QEMU
  and the proxy, during the migration (the proxy's: from listening to its exit):
  on a loaded machine each stage's throughput is bounded by the CPU time it gets;
* the load average (1 min) before each size's runs.

With ``--to-qemu`` (say ``--qemu 10.0 --to-qemu 7.2``) the proxied runs cross releases: the
10.0 guest on pc-q35-10.0 goes through the proxy, converted, to QEMU 7.2 on pc-q35-7.2, and
the direct runs are 7.2 to 7.2, so "added ms" is the downtime a conversion adds (the
device sections are converted after the source stopped).

Usage (``--help`` for every option)::

    python benchmarks/bench_proxy.py --sizes 1,4 --repeat 3     # issue 11 section 6: 1 and 4 GiB
    python benchmarks/bench_proxy.py --sizes 1 --repeat 5       # 1 GiB only
    python benchmarks/bench_proxy.py --qemu 10.0 --to-qemu 7.2 --sizes 1   # across releases
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm(qemu: str, machine: str, gib: int, memory: str, *extra: str) -> list[str]:
    return find_qemu(qemu).command(
        "-nodefaults", "-display", "none", "-accel", "tcg", "-machine", machine,
        "-m", f"{gib}G", "-object", f"{memory},id=mem0,size={gib}G",
        "-machine", "memory-backend=mem0", *extra,
    )  # fmt: skip


def migrate_once(
    qemu: str, ram: Path, dst_ram: Path | None, gib: int, *, proxy: bool, to_qemu: str = ""
) -> dict[str, float]:
    """One live migration; the source's figures, the CPU it cost, the proxy's peak RSS.

    ``dst_ram``: the destination's RAM file (shared, preallocated); None: fresh anonymous RAM.
    ``to_qemu``: the destination's build (default ``qemu``), on its newest q35 machine; the
    proxy converts for it.
    """
    to_qemu = to_qemu or qemu
    machine, to_machine = MACHINES[qemu], MACHINES[to_qemu]
    binary, to_binary = find_qemu(qemu), find_qemu(to_qemu)
    dport = _free_port()
    src_argv = _vm(qemu, machine, gib, f"memory-backend-file,mem-path={ram},share=off")
    dst_memory = (
        "memory-backend-ram"
        if dst_ram is None
        else f"memory-backend-file,mem-path={dst_ram},share=on,prealloc=on"
    )
    dst_argv = _vm(to_qemu, to_machine, gib, dst_memory, "-incoming", f"tcp:127.0.0.1:{dport}")
    with Guest(src_argv, binary.env) as src, Guest(dst_argv, to_binary.env) as dst:
        proc: subprocess.Popen[str] | None = None
        proxy_start = 0.0
        target = dport
        if proxy:
            target = _free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "miglab", "proxy", "--once",
                 "--listen", f"tcp:127.0.0.1:{target}", "--connect", f"tcp:127.0.0.1:{dport}",
                 "--src-qemu", qemu, "--to-qemu", to_qemu, "--machine", to_machine,
                 *(["--allow-guest-visible"] if to_qemu != qemu else [])],
                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            assert proc.stdout is not None
            proc.stdout.readline()  # "listening on ..."
            proxy_start = _cpu_seconds(proc.pid)  # Python and miglab's imports

        async def run() -> dict[str, Any]:
            s = await src.connect()
            d = await dst.connect()  # answers once its RAM is preallocated
            try:
                await asyncio.sleep(1.0)  # firmware starts; the guest is running
                await s.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
                cpu0 = _cpu_seconds(src.process.pid), _cpu_seconds(dst.process.pid)
                await s.execute("migrate", {"uri": f"tcp:127.0.0.1:{target}"})
                done: dict[str, float] = {}
                while len(done) < 2:  # when each side first reports completed
                    for side, qmp in (("src", s), ("dst", d)):
                        if side in done:
                            continue
                        reply = await qmp.execute("query-migrate")
                        status = reply.get("status") if isinstance(reply, dict) else None
                        if status == "completed":
                            done[side] = time.monotonic()
                        elif status in ("failed", "cancelled"):
                            raise RuntimeError(f"{side} migration {status}")
                    await asyncio.sleep(POLL_SECONDS)
                info = await s.execute("query-migrate")
                assert isinstance(info, dict)
                info["cpu"] = (
                    _cpu_seconds(src.process.pid) - cpu0[0],
                    _cpu_seconds(dst.process.pid) - cpu0[1],
                )
                # The source's downtime ends when it has sent the last byte; the guest runs
                # again only once the destination has loaded it.
                info["lag ms"] = max(0.0, done["dst"] - done["src"]) * 1000
                return info
            finally:
                await quit_qemu(s)
                await quit_qemu(d)

        info = run_bounded(run(), 900, "bench migration")
        rss = cpu = 0.0
        if proc is not None:
            _, _, usage = os.wait4(proc.pid, 0)
            rss = usage.ru_maxrss / 1024
            cpu = usage.ru_utime + usage.ru_stime - proxy_start
            summary = proc.stdout.read() if proc.stdout else ""
            if "FAILED" in summary:
                raise RuntimeError(summary)
        seconds = info["total-time"] / 1000
        gb = info["ram"]["transferred"] / 1e9
        return {
            "MB/s": gb * 1000 / seconds,
            "downtime ms": float(info["downtime"]) + info["lag ms"],
            "rss MiB": rss,
            "src s/GB": info["cpu"][0] / gb,
            "dst s/GB": info["cpu"][1] / gb,
            "proxy s/GB": cpu / gb,
        }


def main() -> int:
    usage = __doc__[__doc__.index("Usage") :]
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=usage,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--qemu", default="10.0", choices=sorted(MACHINES))
    parser.add_argument("--sizes", default="1,4", help="guest RAM sizes in GiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--to-qemu", default="", choices=["", *sorted(MACHINES)],
        help="across releases: proxied runs migrate --qemu's guest through the proxy to this "
        "build (converted), direct runs migrate this build's guest to itself",
    )  # fmt: skip
    parser.add_argument(
        "--fresh-destination", action="store_true",
        help="destination RAM: fresh anonymous memory, first touched by the migration",
    )  # fmt: skip
    args = parser.parse_args()
    where = "fresh anonymous" if args.fresh_destination else "populated /dev/shm file"
    to_qemu = args.to_qemu or args.qemu
    if to_qemu == args.qemu:
        what = f"QEMU {args.qemu}, {MACHINES[args.qemu]}"
    else:
        what = (
            f"proxy: QEMU {args.qemu} {MACHINES[args.qemu]} -> converted -> QEMU {to_qemu} "
            f"{MACHINES[to_qemu]}; direct: QEMU {to_qemu} -> QEMU {to_qemu}"
        )
    print(f"{what}, loopback TCP, destination RAM: {where}, medians of {args.repeat}")
    print(
        f"{'GiB':>4} {'load':>5} {'direct MB/s':>12} {'proxy MB/s':>11} {'ratio':>6} "
        f"{'direct dt ms':>13} {'proxy dt ms':>12} {'added ms':>9} {'proxy RSS MiB':>14} "
        f"{'CPU s/GB: src':>14} {'dst':>5} {'proxy':>6}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="miglab-bench-proxy-") as tmp,
        tempfile.TemporaryDirectory(prefix="miglab-bench-proxy-", dir="/dev/shm") as shm,
    ):
        for gib in (int(x) for x in args.sizes.split(",")):
            ram = Path(tmp) / f"ram-{gib}G"
            _fill(ram, gib)
            dst_ram = None if args.fresh_destination else Path(shm) / f"dst-{gib}G"
            if dst_ram is not None:  # warm-up: the first run populates the shared file
                migrate_once(to_qemu, ram, dst_ram, gib, proxy=False)
            load = os.getloadavg()[0]
            runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            for _ in range(args.repeat):
                for proxy in (False, True):  # alternated, so load drifts hit both alike
                    source = args.qemu if proxy else to_qemu
                    runs[proxy].append(
                        migrate_once(source, ram, dst_ram, gib, proxy=proxy, to_qemu=to_qemu)
                    )
                    time.sleep(0.5)
            med = {p: {k: statistics.median(r[k] for r in runs[p]) for k in runs[p][0]}
                   for p in runs}  # fmt: skip
            d, p = med[False], med[True]
            print(
                f"{gib:>4} {load:>5.1f} {d['MB/s']:>12.0f} {p['MB/s']:>11.0f} "
                f"{p['MB/s'] / d['MB/s']:>6.2f} {d['downtime ms']:>13.0f} "
                f"{p['downtime ms']:>12.0f} {p['downtime ms'] - d['downtime ms']:>9.0f} "
                f"{p['rss MiB']:>14.1f} {d['src s/GB']:>14.2f} {d['dst s/GB']:>5.2f} "
                f"{p['proxy s/GB']:>6.2f}",
                flush=True,
            )
            ram.unlink()
            if dst_ram is not None:
                dst_ram.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
