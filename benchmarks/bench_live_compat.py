"""CPU time of the proxy's conversion step for a live move between QEMU releases.

In a live migration the device sections come after the last RAM pass, while the source is
stopped, so every millisecond the proxy spends converting them is guest downtime.  This
replays that step in-process, as :class:`~miglab.live.pump.Pump` runs it: the running test
guest's live capture (the ``live`` device set on the source build's newest q35 machine,
:func:`~miglab.qemu.capture_cache.cached_capture`) is decoded from the source build's
descriptions (:func:`~miglab.live.source_decoding`, no vmdesc), then every record goes
through one :class:`~miglab.compat.qemu.Conversion` (``record`` and ``check``, guest-visible
changes allowed as ``miglab migrate`` allows them in the tests) and the vmdesc trailer is
refreshed.  Printed per pair: the CPU time (``time.process_time``) of the first run in the
process (what ``miglab proxy --once`` pays: knowledge and descriptions built on first use),
the median and the spread of ``--repeat`` more runs, the number of changes and a digest of the change report (it must
not change when the conversion is made faster).

Usage: ``python benchmarks/bench_live_compat.py [--pairs 10.0-7.2,11.1-5.2] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miglab.compat.qemu import Conversion  # noqa: E402
from miglab.live import source_decoding  # noqa: E402
from miglab.qemu.capture_cache import cached_capture  # noqa: E402
from miglab.stream.model import Stream  # noqa: E402
from miglab.stream.reader import load  # noqa: E402


def convert_once(stream: Stream, src: str, dst: str) -> tuple[float, list[str]]:
    """CPU seconds of the device records' conversion; the changes, as their reprs."""
    conversion = Conversion(
        source_machine=stream.machine,
        to_qemu=dst,
        machine=f"pc-q35-{dst}",
        from_qemu=src,
        allow_guest_visible=True,
    )
    config = conversion.configuration(stream.configuration)  # sent first, not in the downtime
    holder = Stream(vmdesc=json.loads(json.dumps(stream.vmdesc)), configuration=config)
    t0 = time.process_time()
    for rec in stream.records:
        conversion.record(rec)
        conversion.check()
    conversion.refresh_vmdesc(holder)
    seconds = time.process_time() - t0
    return seconds, [repr(c) for c in conversion.report().changes]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="10.0-7.2,11.1-5.2")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; CPU ms, median of {args.repeat}")
    print(f"{'pair':>10} {'records':>8} {'first ms':>9} {'median ms':>10} {'min ms':>7} "
          f"{'max ms':>7} {'changes':>8}  report digest")  # fmt: skip
    for pair in args.pairs.split(","):
        src, dst = pair.split("-")
        cap = cached_capture(src, f"pc-q35-{src}", "live")
        dec = source_decoding(src, f"pc-q35-{src}")
        stream = load(cap.stream, schema=dec.schema, descriptions=dec.descriptions)
        first, *runs = [convert_once(stream, src, dst) for _ in range(args.repeat + 1)]
        times = [t * 1000 for t, _ in runs]
        changes = first[1]
        assert all(r[1] == changes for r in runs)
        digest = hashlib.sha256("\n".join(sorted(changes)).encode()).hexdigest()[:16]
        print(
            f"{pair:>10} {len(stream.records):>8} {first[0] * 1000:>9.1f} "
            f"{statistics.median(times):>10.1f} "
            f"{min(times):>7.1f} {max(times):>7.1f} {len(changes):>8}  {digest}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
