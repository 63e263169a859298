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

Downtime = the source's ``downtime`` (query-migrate: stop to its last byte sent) + ``lag``,
the time the destination took after that to report ``completed`` (both sides polled every
20 ms, so lag has that grain): the guest runs again only once the destination has loaded the
device state.  Printed per route: medians of ``--repeat`` runs of the downtime, of its two
parts, of the bytes the source sent while stopped (``downtime-bytes``; ``-`` where the build
does not report it, as 5.2), of the dirty-sync count (RAM passes), the added downtime against both
baselines, the runs, and the load average (1 min) before and after.

Usage::

    python benchmarks/bench_downtime.py --to-qemu 5.2 --repeat 5
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
from bench_proxy import MACHINES


def migrate(
    qemu: str, to_qemu: str, ram: Path, dst_ram: Path, gib: int, proxy: Path | None, tmp: Path
) -> dict[str, float]:
    """One live migration ``qemu`` -> ``to_qemu`` over loopback TCP, through ``proxy``'s miglab
    when given: :func:`bench_proxy.migrate_once`'s figures (the downtime and its parts)."""
    route = bench_proxy.Route("", "tcp", "tcp", proxy)
    return bench_proxy.migrate_once(
        qemu, ram, dst_ram, gib, path=route, sockets=tmp, to_qemu=to_qemu
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qemu", default="10.0", choices=sorted(MACHINES))
    parser.add_argument("--to-qemu", default="5.2", choices=sorted(MACHINES))
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tree", action="append", type=Path, help="checkout(s) whose proxy runs")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree or [bench_proxy.ROOT]]
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
    runs: dict[str, list[dict[str, float]]] = {r[0]: [] for r in routes}
    with (
        tempfile.TemporaryDirectory(prefix="miglab-bench-downtime-") as tmp,
        tempfile.TemporaryDirectory(prefix="miglab-bench-downtime-", dir="/dev/shm") as shm,
    ):
        ram, dst_ram = Path(tmp) / "ram", Path(shm) / "dst"
        bench_proxy._fill(ram, gib)
        migrate(x, x, ram, dst_ram, gib, None, Path(tmp))  # populates dst_ram
        for _ in range(args.repeat):
            for name, src, dst, tree in routes:
                runs[name].append(migrate(src, dst, ram, dst_ram, gib, tree, Path(tmp)))
                time.sleep(0.5)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    base_x, base_s = med[routes[0][0]]["downtime ms"], med[routes[1][0]]["downtime ms"]
    print(f"{'route':<34} {'downtime':>8} {'src':>5} {'lag':>5} {'stopped MB':>10} {'syncs':>5} "
          f"{f'vs {x}->{x}':>10} {f'vs {s}->{s}':>10}  runs (downtime ms)")  # fmt: skip
    for name, _, _, _ in routes:
        m = med[name]
        stopped = f"{m['stopped MB']:.1f}" if m["stopped MB"] >= 0 else "-"
        print(f"{name:<34} {m['downtime ms']:>8.0f} {m['src ms']:>5.0f} {m['lag ms']:>5.0f} "
              f"{stopped:>10} {m['syncs']:>5.0f} {m['downtime ms'] - base_x:>+10.0f} "
              f"{m['downtime ms'] - base_s:>+10.0f}  "
              + " ".join(f"{r['downtime ms']:.0f}" for r in runs[name]))  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
