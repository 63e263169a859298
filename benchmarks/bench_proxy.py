"""Live migration through ``miglab proxy`` against a direct one, same QEMU build, same run.

A guest with 1 GiB (and 4 GiB) of non-zero RAM -- its RAM is a private mapping of a file
filled with a repeated random MiB, so every page is sent whole -- runs its firmware on QEMU
``--qemu`` (TCG) and is migrated live on this host, alternately along each route:

* ``direct tcp`` / ``direct unix``: straight to the destination's ``-incoming`` over
  loopback TCP / a unix socket (the first direct route is the reference of the ratios);
* ``proxy SRC/DST``: through ``python -m miglab proxy --once`` (a separate process, so its
  CPU and peak RSS are its own), over SRC from the source and DST to the destination.
  ``proxy tcp/unix`` is the proxy beside the destination, as ``miglab migrate`` places it:
  the source's link is TCP, the proxy's to the destination QEMU a unix socket;
  ``proxy unix/unix`` is ``miglab migrate`` with both QEMUs on one host (its default
  sockets), to set beside ``direct unix``;
* ``baseline SRC/DST`` (with ``--baseline DIR``): the first proxied route through an
  earlier checkout's proxy, so before and after are measured in the same run;
* ``relay SRC/DST`` (with ``--relay LEGS``): through ``bench_relay.py --serve``, a relay
  that moves the bytes without parsing them (``--relay-mode``: ``splice``, no copy
  through user space; ``peek``, one copy to see them, then splice; ``copy``, the two
  copies of a receive and a send): the floor of what a process in the stream's path costs
  on this machine, to set the proxy's ratio beside.

``max-bandwidth`` is lifted so the links and the CPU, not QEMU's rate limit, decide.

The destination's RAM is a shared file in ``/dev/shm`` that one warm-up run has populated,
mapped with ``prealloc=on``, so the migration writes into RAM that is already there.  With
fresh anonymous RAM (``--fresh-destination``) the destination QEMU spends most of its time
in the kernel's first-touch page faults (``clear_page``): on the 2-core VM the benchmarks
run on that is ~4 CPU seconds per GiB, and it caps even a direct migration at ~100-150 MB/s.

Printed per guest size and route, medians of ``--repeat`` runs of each:

* throughput: RAM bytes QEMU transferred / the source's ``total-time``, and its ratio to
  the reference route's;
* downtime: the source's ``downtime`` (ms, stop to its last byte sent) plus the time the
  destination took after that to report ``completed`` (polled every 20 ms on both sides),
  and what it adds to the reference route's;
* the proxy's peak RSS (MiB, ``ru_maxrss`` of the proxy process);
* CPU seconds (user + system) per GB transferred of the source QEMU, the destination QEMU
  and the proxy, during the migration (the proxy's: from listening to its exit):
  on a loaded machine each stage's throughput is bounded by the CPU time it gets;
* the load average (1 min) over the size's runs, lowest..highest.

With ``--to-qemu`` (say ``--qemu 10.0 --to-qemu 7.2``) the proxied runs cross releases: the
10.0 guest on pc-q35-10.0 goes through the proxy, converted, to QEMU 7.2 on pc-q35-7.2, and
the direct runs are 7.2 to 7.2, so "added" is the downtime a conversion adds (the
device sections are converted after the source stopped).

Usage (``--help`` for every option)::

    python benchmarks/bench_proxy.py --sizes 1,4 --repeat 3     # issue 11 section 6: 1 and 4 GiB
    python benchmarks/bench_proxy.py --sizes 1 --repeat 5       # 1 GiB only
    python benchmarks/bench_proxy.py --qemu 10.0 --to-qemu 7.2 --sizes 1   # across releases
    python benchmarks/bench_proxy.py --baseline /tmp/before     # against an earlier checkout
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qemu.qmp import QMPClient  # noqa: E402

from miglab.qemu._process import POLL_SECONDS, Guest, quit_qemu, run_bounded  # noqa: E402
from miglab.qemu.runner import find_qemu  # noqa: E402

MACHINES = {"5.2": "pc-q35-5.2", "7.2": "pc-q35-7.2", "10.0": "pc-q35-10.0", "11.1": "pc-q35-11.1"}


@dataclass(frozen=True)
class Route:
    """How the stream goes: straight over one link, or through a proxy over two.

    ``src_leg`` / ``dst_leg``: ``tcp`` (loopback) or ``unix``, source side and destination
    side (for a direct run the one link, both the same); ``proxy``: the checkout whose miglab
    runs the proxy (its ``PYTHONPATH``), None for a direct run; ``relay``: instead of a
    proxy, bench_relay's relay in this mode.
    """

    name: str
    src_leg: str
    dst_leg: str
    proxy: Path | None = None
    relay: str = ""


def _address(leg: str, sock: Path) -> str:
    """A fresh migration address: a free loopback TCP port, or the unix socket ``sock``."""
    if leg == "unix":
        sock.unlink(missing_ok=True)
        return f"unix:{sock}"
    return f"tcp:127.0.0.1:{_free_port()}"


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
    qemu: str,
    ram: Path,
    dst_ram: Path | None,
    gib: int,
    *,
    path: Route,
    sockets: Path,
    to_qemu: str = "",
    downtime_limit: int | None = None,
) -> dict[str, float]:
    """One live migration along ``path``; the source's figures, the CPU it cost, the proxy's RSS.

    ``dst_ram``: the destination's RAM file (shared, preallocated); None: fresh anonymous RAM.
    ``to_qemu``: the destination's build (default ``qemu``), on its newest q35 machine; the
    proxy converts for it.  ``sockets``: where the unix sockets go.  ``downtime_limit``: the
    source's ``downtime-limit`` parameter in ms (None: QEMU's default, 300).

    ``guest ms`` is the downtime the guest sees: from the source's ``STOP`` event to the
    destination's ``RESUME`` (it starts without ``-S``, so it resumes on its own once it has
    loaded the stream), both by QEMU's own event timestamps (one host clock, microseconds).
    ``downtime ms`` is the older figure: the source's ``downtime`` plus the polled lag.
    """
    to_qemu = to_qemu or qemu
    machine, to_machine = MACHINES[qemu], MACHINES[to_qemu]
    binary, to_binary = find_qemu(qemu), find_qemu(to_qemu)
    incoming = _address(path.dst_leg, sockets / "incoming.sock")
    src_argv = _vm(qemu, machine, gib, f"memory-backend-file,mem-path={ram},share=off")
    dst_memory = (
        "memory-backend-ram"
        if dst_ram is None
        else f"memory-backend-file,mem-path={dst_ram},share=on,prealloc=on"
    )
    dst_argv = _vm(to_qemu, to_machine, gib, dst_memory, "-incoming", incoming)
    with Guest(src_argv, binary.env) as src, Guest(dst_argv, to_binary.env) as dst:
        proc: subprocess.Popen[str] | None = None
        proxy_start = 0.0
        target = incoming
        if path.relay or path.proxy is not None:
            target = _address(path.src_leg, sockets / "proxy.sock")
            if path.relay:
                argv = [sys.executable, str(ROOT / "benchmarks" / "bench_relay.py"),
                        "--serve", target, incoming, "--modes", path.relay]  # fmt: skip
                tree = ROOT
            else:
                assert path.proxy is not None
                argv = [sys.executable, "-m", "miglab", "proxy", "--once",
                        "--listen", target, "--connect", incoming,
                        "--src-qemu", qemu, "--to-qemu", to_qemu, "--machine", to_machine,
                        *(["--allow-guest-visible"] if to_qemu != qemu else [])]  # fmt: skip
                tree = path.proxy
            # Run from that checkout: "python -m" puts the working directory first on
            # sys.path, ahead of PYTHONPATH, so a baseline run elsewhere ran this tree.
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=tree,
                                    env={**os.environ, "PYTHONPATH": str(tree)})  # fmt: skip
            assert proc.stdout is not None
            proc.stdout.readline()  # "listening on ..."
            proxy_start = _cpu_seconds(proc.pid)  # Python's and miglab's imports

        async def run() -> dict[str, Any]:
            s = await src.connect()
            d = await dst.connect()  # answers once its RAM is preallocated
            try:
                await asyncio.sleep(1.0)  # firmware starts; the guest is running
                params: dict[str, int] = {"max-bandwidth": 1 << 40}
                if downtime_limit is not None:
                    params["downtime-limit"] = downtime_limit
                await s.execute("migrate-set-parameters", params)
                cpu0 = _cpu_seconds(src.process.pid), _cpu_seconds(dst.process.pid)
                await s.execute("migrate", {"uri": target})
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
                stop = _event_time(s, "STOP")
                resume = await _wait_event_time(d, "RESUME")
                info["guest ms"] = (resume - stop) * 1000
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
        ram_info = info["ram"]
        gb = ram_info["transferred"] / 1e9
        return {
            "MB/s": gb * 1000 / seconds,
            "guest ms": info["guest ms"],
            "downtime ms": float(info["downtime"]) + info["lag ms"],
            # its parts: the source's own figure, the destination's lag (polled), the RAM the
            # source sent once stopped (-1: the build does not say) and its dirty syncs
            "src ms": float(info["downtime"]),
            "lag ms": info["lag ms"],
            "stopped MB": ram_info["downtime-bytes"] / 1e6
            if "downtime-bytes" in ram_info
            else -1.0,
            "syncs": float(ram_info.get("dirty-sync-count", 0)),
            "rss MiB": rss,
            "src s/GB": info["cpu"][0] / gb,
            "dst s/GB": info["cpu"][1] / gb,
            "proxy s/GB": cpu / gb,
        }


def _event_time(qmp: QMPClient, name: str) -> float:
    """QEMU's timestamp (seconds) of the first ``name`` event ``qmp`` has heard."""
    for event in qmp.events.history:
        if event["event"] == name:
            stamp = event["timestamp"]
            return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6
    raise RuntimeError(f"QEMU sent no {name} event")


async def _wait_event_time(qmp: QMPClient, name: str, timeout: float = 10.0) -> float:
    """:func:`_event_time`, waiting up to ``timeout`` seconds for the event to come."""
    deadline = time.monotonic() + timeout
    while not any(e["event"] == name for e in qmp.events.history):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    return _event_time(qmp, name)


def routes(args: argparse.Namespace) -> list[Route]:
    """The direct runs and the proxied ones that ``--legs`` and ``--baseline`` ask for."""
    out = [Route(f"direct {leg}", leg, leg) for leg in args.direct.split(",") if leg]
    for i, legs in enumerate(args.legs.split(",")):
        src_leg, _, dst_leg = legs.partition("/")
        out.append(Route(f"proxy {legs}", src_leg, dst_leg, ROOT))
        if args.baseline is not None and i == 0:
            out.append(Route(f"baseline {legs}", src_leg, dst_leg, args.baseline))
    for legs in filter(None, args.relay.split(",")):
        src_leg, _, dst_leg = legs.partition("/")
        for mode in args.relay_mode.split(","):
            out.append(Route(f"relay {legs} {mode}", src_leg, dst_leg, relay=mode))
    return out


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
        "--direct", default="tcp,unix",
        help="links of the direct runs (comma-separated: tcp, unix); the first is the "
        "reference of the ratios",
    )  # fmt: skip
    parser.add_argument(
        "--legs", default="tcp/tcp,tcp/unix,unix/unix",
        help="proxied runs, source leg/destination leg each (comma-separated; unix/unix is "
        "miglab migrate's own placement on one host)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path, default=None,
        help="a checkout of an earlier miglab (the directory holding its miglab/): its proxy "
        "runs the first of --legs in the same alternation, so before and after share one run",
    )  # fmt: skip
    parser.add_argument(
        "--relay", default="",
        help="relay runs, source leg/destination leg each (comma-separated): bench_relay's "
        "relay in place of the proxy, the floor of any process in the path",
    )  # fmt: skip
    parser.add_argument(
        "--relay-mode", default="splice",
        help="how the relay runs move the bytes (comma-separated, a route each): splice, "
        "peek (seen by a peek, then spliced) or copy (see bench_relay.py)",
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
    paths = routes(args)
    reference = paths[0]
    print(f"{what}, loopback, destination RAM: {where}, medians of {args.repeat}")
    print(
        "route: direct LINK = source QEMU -> destination QEMU over LINK; "
        "proxy SRC/DST = source -SRC-> miglab proxy -DST-> destination"
        + (f"; baseline = the proxy of {args.baseline}" if args.baseline else "")
    )
    print(f"ratio and added ms: against {reference.name}; load: 1-min load average, min..max")
    print(
        f"{'GiB':>4} {'route':<22} {'MB/s':>6} {'ratio':>6} {'dt ms':>6} {'added':>6} "
        f"{'RSS MiB':>8} {'CPU s/GB: src':>14} {'dst':>5} {'proxy':>6} {'load':>9}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="miglab-bench-proxy-") as tmp,
        tempfile.TemporaryDirectory(prefix="miglab-bench-proxy-", dir="/dev/shm") as shm,
    ):
        sockets = Path(tmp)
        for gib in (int(x) for x in args.sizes.split(",")):
            ram = Path(tmp) / f"ram-{gib}G"
            _fill(ram, gib)
            dst_ram = None if args.fresh_destination else Path(shm) / f"dst-{gib}G"
            if dst_ram is not None:  # warm-up: the first run populates the shared file
                migrate_once(to_qemu, ram, dst_ram, gib, path=Route("", "tcp", "tcp"),
                             sockets=sockets)  # fmt: skip
            runs: dict[Route, list[dict[str, float]]] = {r: [] for r in paths}
            loads: list[float] = []
            for _ in range(args.repeat):
                for route in paths:  # alternated, so load drifts hit all alike
                    source = args.qemu if route.proxy is not None else to_qemu
                    loads.append(os.getloadavg()[0])
                    runs[route].append(
                        migrate_once(source, ram, dst_ram, gib, path=route, to_qemu=to_qemu,
                                     sockets=sockets)
                    )  # fmt: skip
                    time.sleep(0.5)
            med = {r: {k: statistics.median(x[k] for x in runs[r]) for k in runs[r][0]}
                   for r in paths}  # fmt: skip
            ref = med[reference]
            span = f"{min(loads):.1f}..{max(loads):.1f}"
            for route in paths:
                m = med[route]
                print(
                    f"{gib:>4} {route.name:<22} {m['MB/s']:>6.0f} {m['MB/s'] / ref['MB/s']:>6.2f} "
                    f"{m['downtime ms']:>6.0f} {m['downtime ms'] - ref['downtime ms']:>+6.0f} "
                    f"{m['rss MiB']:>8.1f} {m['src s/GB']:>14.2f} {m['dst s/GB']:>5.2f} "
                    f"{m['proxy s/GB']:>6.2f} {span:>9}",
                    flush=True,
                )
            ram.unlink()
            if dst_ram is not None:
                dst_ram.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
