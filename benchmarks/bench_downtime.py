"""Added downtime of a live move across releases through ``miglab proxy``, split by its cause.

The migrations are :mod:`bench_proxy`'s (a firmware guest with ``--gib`` GiB of non-zero RAM
on each build's newest q35 machine, ``-nodefaults``, loopback TCP, ``python -m miglab proxy
--once`` as a separate process, the destination's RAM a populated ``/dev/shm`` file).  Per
round, in turn (so load drifts hit them alike):

* ``direct X->X``: the destination build ``--to-qemu`` to itself;
* ``direct S->S``: the source build ``--qemu`` to itself (the source's own release);
* ``S->proxy->S``: the source build through each ``--tree``'s proxy to itself, not converted;
* ``S->proxy->X``: the source build through each ``--tree``'s proxy, converted, to ``X``.

QEMU decides when to stop the guest from its bandwidth estimate and ``downtime-limit``, and
what it still sends once stopped differs between builds, so a cross-release move is set
beside both same-release baselines: ``S->proxy->X`` minus ``direct X->X`` is the figure of
issue 11 section 6; ``S->proxy->S`` minus ``direct S->S`` is what the proxy adds to the source
build's own stop; ``S->proxy->X`` minus ``S->proxy->S`` is what converting and the
destination build's load add.

Two downtime figures per run:

* ``guest`` (the issue's figure): the time the guest does not run, from the source's ``STOP``
  event to the destination's ``RESUME`` event, both by QEMU's own event timestamps (one host
  clock, microseconds; both QMP connections are up before ``migrate``, and the destination,
  started without ``-S``, resumes by itself once it has loaded the stream).  It holds the RAM
  still dirty at the stop, the device state, the proxy's work on it and the transit;
* ``old`` (kept to compare with earlier sessions): the source's ``downtime`` (query-migrate:
  stop to its last byte sent) + ``lag``, the time the destination took after that to report
  ``completed`` (both sides polled every 20 ms, so lag has that grain).

QEMU stops the guest once the RAM left fits in its bandwidth estimate x ``downtime-limit``
(300 ms by default): with an idle guest that can be in the first pass, with hundreds of MB
left, so at the default limit the downtime is mostly that RAM's transfer and varies with the
estimate.  ``--downtime-limit MS`` (repeatable; ``0`` = QEMU's default) sets the source's limit
for every route alike, each limit its own table, the limits alternated too; with a low one (say
20 ms) the firmware guest, which dirties almost nothing, stops with a few MB left, and what the
routes differ by is what the proxy adds (device state decoded, converted, re-encoded, and the
extra hop).  Printed per limit and route: medians of ``--repeat`` runs of ``guest``, of it
minus both baselines, of ``old`` and its two parts, of the bytes the source sent while stopped
(``downtime-bytes``, "stopped MB"; ``-`` where the build does not report it, as 5.2), of the
dirty-sync count (RAM passes), the runs' ``guest`` figures, and the load average (1 min)
before and after.

Usage::

    python benchmarks/bench_downtime.py --to-qemu 5.2 --repeat 5
    python benchmarks/bench_downtime.py --to-qemu 7.2 --tree /tmp/base --tree . --repeat 5
    python benchmarks/bench_downtime.py --to-qemu 5.2 --downtime-limit 0 --downtime-limit 20
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
from bench_proxy import MACHINES


def migrate(
    qemu: str, to_qemu: str, ram: Path, dst_ram: Path, gib: int, proxy: Path | None, tmp: Path,
    limit: int,
) -> dict[str, float]:  # fmt: skip
    """One live migration ``qemu`` -> ``to_qemu`` over loopback TCP, through ``proxy``'s miglab
    when given, at downtime-limit ``limit`` ms (0: QEMU's default): :func:`bench_proxy.migrate_once`'s
    figures (the downtimes and their parts)."""
    route = bench_proxy.Route("", "tcp", "tcp", proxy)
    return bench_proxy.migrate_once(
        qemu, ram, dst_ram, gib, path=route, sockets=tmp, to_qemu=to_qemu,
        downtime_limit=limit or None,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qemu", default="10.0", choices=sorted(MACHINES))
    parser.add_argument("--to-qemu", default="5.2", choices=sorted(MACHINES))
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tree", action="append", type=Path, help="checkout(s) whose proxy runs")
    parser.add_argument(
        "--downtime-limit", action="append", type=int, metavar="MS",
        help="the source's downtime-limit, ms (repeatable; 0: QEMU's default, 300)",
    )  # fmt: skip
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree or [bench_proxy.ROOT]]
    limits: list[int] = args.downtime_limit or [0]
    s, x, gib = args.qemu, args.to_qemu, args.gib
    tag = (lambda t: f" [{str(t)[-18:]}]") if len(trees) > 1 else (lambda t: "")
    routes: list[tuple[str, str, str, Path | None]] = [
        (f"direct {x}->{x}", x, x, None),
        (f"direct {s}->{s}", s, s, None),
        *((f"{s}->proxy->{s}{tag(t)}", s, s, t) for t in trees),
        *((f"{s}->proxy->{x}{tag(t)}", s, x, t) for t in trees),
    ]
    print(f"{gib} GiB firmware guest, medians of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.1f} before", flush=True)  # fmt: skip
    runs: dict[tuple[int, str], list[dict[str, float]]] = {
        (lim, r[0]): [] for lim in limits for r in routes
    }
    with (
        tempfile.TemporaryDirectory(prefix="miglab-bench-downtime-") as tmp,
        tempfile.TemporaryDirectory(prefix="miglab-bench-downtime-", dir="/dev/shm") as shm,
    ):
        ram, dst_ram = Path(tmp) / "ram", Path(shm) / "dst"
        bench_proxy._fill(ram, gib)
        migrate(x, x, ram, dst_ram, gib, None, Path(tmp), 0)  # populates dst_ram
        for _ in range(args.repeat):
            for lim in limits:
                for name, src, dst, tree in routes:
                    runs[lim, name].append(
                        migrate(src, dst, ram, dst_ram, gib, tree, Path(tmp), lim)
                    )
                    time.sleep(0.5)
    med = {k: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for k, rs in runs.items()}
    for lim in limits:
        base_x, base_s = med[lim, routes[0][0]]["guest ms"], med[lim, routes[1][0]]["guest ms"]
        print(f"downtime-limit {f'{lim} ms' if lim else '300 ms (default)'}; "
              "guest = STOP..RESUME (QEMU events), old = src + lag (polled)")  # fmt: skip
        print(f"{'route':<34} {'guest':>6} {f'vs {x}->{x}':>10} {f'vs {s}->{s}':>10} "
              f"{'old':>5} {'src':>5} {'lag':>5} {'stopped MB':>10} {'syncs':>5}  "
              "runs (guest ms)")  # fmt: skip
        for name, _, _, _ in routes:
            m = med[lim, name]
            stopped = f"{m['stopped MB']:.1f}" if m["stopped MB"] >= 0 else "-"
            print(f"{name:<34} {m['guest ms']:>6.1f} {m['guest ms'] - base_x:>+10.1f} "
                  f"{m['guest ms'] - base_s:>+10.1f} {m['downtime ms']:>5.0f} {m['src ms']:>5.0f} "
                  f"{m['lag ms']:>5.0f} {stopped:>10} {m['syncs']:>5.0f}  "
                  + " ".join(f"{r['guest ms']:.1f}" for r in runs[lim, name]))  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
