"""Issue 17's "Figures to report": cuts and bit flips of every container kind miglab reads.

For each kind (bare legacy, libvirt raw, libvirt compressed, qcow2, mapped-ram,
compressed, postcopy, no-vmdesc legacy) one input is made from the small real
streams in data/ with the container's own format (see :func:`make_inputs`), then:

* **cuts**: the input cut at every offset of its first 64 KiB and at 1,000 random
  offsets past that (seeded), each given to ``miglab.load``.  A cut must end in a
  ``MiglabError``; one that loads instead is *caught* when ``verify`` of it (bare
  streams) reports an error, and a *miss* otherwise.  Any other exception is a
  traceback; a cut over ``--timeout`` seconds is a hang.
* **flips**: 1,000 random single-bit flips (seeded), each loaded, written back
  (``to_bytes``) and verified, as the fuzzer's ``load`` target does.  Counted:
  tracebacks, hangs, and the peak resident memory of the process doing them
  (``ru_maxrss``, the interpreter and its imports included), against the bound
  of 4x the input + 100 MB.

Every kind runs in its own subprocess under ``RLIMIT_AS`` (``--as-gb``) so a
runaway allocation is a finding, not a dead machine; ``--jobs`` subprocesses run
at once.  Prints one table.

    python benchmarks/hostile_figures.py                  # the full figures (~30 CPU-min)
    python benchmarks/hostile_figures.py --head 4096 --random 100 --flips 100   # a quick look
    python benchmarks/hostile_figures.py --log run.jsonl   # keeps each kind's result as it ends
    python benchmarks/hostile_figures.py --table run.jsonl # the table of what a run finished
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
BARE = DATA / "q72-pc-q35-7.2-default.mig"  # QEMU 7.2, vmdesc and footers
NO_VMDESC = DATA / "q72-pc-i440fx-2.2-default.mig"  # pc-i440fx-2.2: no vmdesc, no footers
KINDS = (
    "bare legacy",
    "libvirt raw",
    "libvirt compressed",
    "qcow2",
    "mapped-ram",
    "compressed",
    "postcopy",
    "no-vmdesc legacy",
)
_ADVISE = b"\x08\x00\x03\x00\x10" + (4096).to_bytes(8, "big") + (12).to_bytes(8, "big")
_LISTEN, _RUN = b"\x08\x00\x04\x00\x00", b"\x08\x00\x05\x00\x00"


def make_inputs(work: Path) -> dict[str, Path]:
    """One file per kind, from data/:

    * bare legacy: ``q72-pc-q35-7.2-default.mig`` as QEMU wrote it;
    * libvirt raw / compressed: that stream behind a libvirt save header
      (``LibvirtQemudSave`` v2, domain XML), raw and gzip (``save_image_format``);
    * qcow2: ``qemu-img create`` (512-byte clusters, so the VM state takes L2
      tables) and ``qemu-img snapshot -c``, then the stream written as that
      snapshot's VM state by miglab (``qemu-img check`` finds it clean);
    * mapped-ram: the stream as a mapped-ram file (pages at fixed offsets, sparse);
    * compressed: the stream gzipped;
    * postcopy: the stream reframed as postcopy sends it: POSTCOPY_ADVISE after the
      configuration, the device sections inside PACKAGED (LISTEN ... RUN), then EOF;
    * no-vmdesc legacy: ``q72-pc-i440fx-2.2-default.mig`` as QEMU wrote it.
    """
    import miglab
    from miglab.containers import libvirt, mapped_ram, qcow2
    from miglab.containers.qcow2_format import read_header, read_snapshots
    from miglab.stream.model import Section

    raw = BARE.read_bytes()
    stream = miglab.load(raw)
    out = {"bare legacy": BARE, "no-vmdesc legacy": NO_VMDESC}
    for kind, fmt in (("libvirt raw", "RAW"), ("libvirt compressed", "GZIP")):
        header = libvirt.LibvirtSave(
            magic=b"LibvirtQemudSave", version=2, data_len=0, was_running=0,
            format=libvirt.SaveFormat[fmt],
            xml="<domain type='kvm'><name>figures</name><os><type machine='pc-q35-7.2'>hvm"
            "</type></os></domain>\n",
        )  # fmt: skip
        out[kind] = miglab.save(stream, work / f"{fmt.lower()}.img", container=header)
    disk = work / "disk.qcow2"
    qemu_img = shutil.which("qemu-img") or "qemu-img"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512",
                    str(disk), "1M"], check=True)  # fmt: skip
    subprocess.run([qemu_img, "snapshot", "-c", "figures", str(disk)], check=True)
    view = memoryview(disk.read_bytes())
    h = read_header(view)
    qcow2.Qcow2Snapshot(read_snapshots(view, h)[0], h, view).save_as(stream, work / "state.qcow2")
    out["qcow2"] = work / "state.qcow2"
    with (work / "state.mapped").open("wb") as fh:
        mapped_ram.write(stream, fh)
    out["mapped-ram"] = work / "state.mapped"
    (work / "state.mig.gz").write_bytes(gzip.compress(raw, mtime=0))
    out["compressed"] = work / "state.mig.gz"
    recs = stream.records
    devices = [r for r in recs if isinstance(r, Section) and r.name != "ram"]
    first, last = devices[0].offset, devices[-1].offset + devices[-1].size
    blob = _LISTEN + raw[first:last] + _RUN
    packaged = b"\x08\x00\x07\x00\x04" + len(blob).to_bytes(4, "big") + blob
    post = raw[: recs[0].offset] + _ADVISE + raw[recs[0].offset : first] + packaged + b"\x00"
    (work / "postcopy.mig").write_bytes(post)
    out["postcopy"] = work / "postcopy.mig"
    return out


class Hang(Exception):
    """An input took longer than the timeout."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang


def _one(data: memoryview, *, whole: bool, bare: bool, timeout: int) -> str:
    """What one input came to: error | caught | miss | loaded | traceback | hang."""
    import miglab
    from miglab.errors import MiglabError
    from miglab.findings import errors
    from miglab.stream.verify import verify

    signal.alarm(timeout)
    try:
        try:
            stream = miglab.load(data)
        except MiglabError:
            return "error"
        if whole:  # a flip: what loads must also write back and verify cleanly
            stream.to_bytes()
        if bare or whole:
            found = errors(verify(data))
            return ("caught" if found else "miss") if not whole else "loaded"
        return "miss"
    except Hang:
        return "hang"
    except MiglabError:
        return "error"
    except Exception:  # the finding this measures
        traceback.print_exc(limit=4)
        return "traceback"
    finally:
        signal.alarm(0)


def child(
    kind: str, path: Path, mode: str, head: int, extra: int, flips: int, timeout: int
) -> None:
    """Run one kind's cuts or flips; print a JSON line of counts."""
    signal.signal(signal.SIGALRM, _alarm)
    data = bytearray(path.read_bytes())
    rng = random.Random(f"{kind}/{mode}")
    counts: dict[str, int] = {}
    bare = kind in ("bare legacy", "no-vmdesc legacy", "postcopy")
    misses: list[int] = []
    start = time.monotonic()
    if mode == "cuts":
        firsts = range(min(head, len(data)))
        rest = range(min(head, len(data)), len(data))
        cuts = [*firsts, *sorted(rng.sample(rest, min(extra, len(rest))))]
        view = memoryview(data)
        for n in cuts:
            what = _one(view[:n], whole=False, bare=bare, timeout=timeout)
            counts[what] = counts.get(what, 0) + 1
            if what == "miss" and len(misses) < 5:
                misses.append(n)
    else:
        for _ in range(flips):
            at, bit = rng.randrange(len(data)), 1 << rng.randrange(8)
            data[at] ^= bit
            what = _one(memoryview(data), whole=True, bare=bare, timeout=timeout)
            data[at] ^= bit
            counts[what] = counts.get(what, 0) + 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "kind": kind, "mode": mode, "size": len(data), "counts": counts, "misses": misses,
        "peak": peak, "seconds": round(time.monotonic() - start, 1),
        "cpu": round(time.process_time(), 1),
    }))  # fmt: skip


def _spawn(args: argparse.Namespace, kind: str, path: Path, mode: str) -> dict[str, Any]:
    limit = args.as_gb << 30
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), mode, "--head", str(args.head),
         "--random", str(args.random), "--flips", str(args.flips), "--timeout", str(args.timeout)],
        capture_output=True, text=True, check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"kind": kind, "mode": mode, "died": proc.returncode, "stderr": proc.stderr[-2000:]}
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = proc.stderr[-2000:]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--head", type=int, default=1 << 16, help="cut at every offset below this")
    p.add_argument("--random", type=int, default=1000, help="random cuts past --head")
    p.add_argument("--flips", type=int, default=1000, help="random bit flips per kind")
    p.add_argument("--timeout", type=int, default=20, help="seconds before an input is a hang")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--as-gb", type=int, default=4, help="RLIMIT_AS of each subprocess, GiB")
    p.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    p.add_argument("--modes", nargs="*", default=["cuts", "flips"], choices=["cuts", "flips"])
    p.add_argument("--log", type=Path, help="append each kind's result (JSON lines) as it ends")
    p.add_argument("--table", type=Path, metavar="LOG", help="print the table of a --log only")
    args = p.parse_args(argv)
    if args.table:  # later lines win: a log of several runs, each line one kind and mode
        done = [json.loads(ln) for ln in args.table.read_text().splitlines() if ln.strip()]
        args.kinds = [k for k in KINDS if any(r["kind"] == k for r in done)]
        _table(args, done)
        return 0
    if args.child:
        kind, path, mode = args.child
        child(kind, Path(path), mode, args.head, args.random, args.flips, args.timeout)
        return 0
    with tempfile.TemporaryDirectory(prefix="miglab-figures-") as tmp:
        inputs = make_inputs(Path(tmp))
        jobs = [(k, inputs[k], m) for k in args.kinds for m in args.modes]

        def run(job: tuple[str, Path, str]) -> dict[str, Any]:
            result = _spawn(args, *job)
            if args.log is not None:  # a long run keeps what it finished
                with args.log.open("a") as fh:
                    fh.write(json.dumps(result) + "\n")
            return result

        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run, jobs))
    _table(args, results)
    bad = [r for r in results if "died" in r or r["counts"].get("traceback") or
           r["counts"].get("hang")]  # fmt: skip
    return 1 if bad else 0


def _table(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    by = {(r["kind"], r["mode"]): r for r in results}
    args.kinds = [k for k in args.kinds if (k, "cuts") in by and (k, "flips") in by]
    if args.table is None:
        print(f"cuts: every offset below {args.head} + {args.random} random; flips: {args.flips} "
              f"random bits; hang: over {args.timeout} s; RLIMIT_AS {args.as_gb} GiB per kind")  # fmt: skip
    else:  # a log may join runs of different sizes: the counts say what each row did
        print(f"from {args.table}: cuts and flips as counted in each row")
    head = ("kind", "bytes", "cuts", "clean error", "caught", "missed", "tb", "hang",
            "flips", "tb", "hang", "peak MB", "bound MB", "CPU s")  # fmt: skip
    rows = [head]
    for kind in args.kinds:
        c, f = by[(kind, "cuts")], by[(kind, "flips")]
        if "died" in c or "died" in f:
            rows.append((kind, "died", str(c.get("died")), str(f.get("died"))))
            continue
        cc, fc = c["counts"], f["counts"]
        size = c["size"]
        peak = max(c["peak"], f["peak"]) / 1e6
        rows.append((
            kind, f"{size:,}", f"{sum(cc.values()):,}",
            f"{100 * cc.get('error', 0) / sum(cc.values()):.2f}%",
            str(cc.get("caught", 0)), str(cc.get("miss", 0)), str(cc.get("traceback", 0)),
            str(cc.get("hang", 0)), f"{sum(fc.values()):,}", str(fc.get("traceback", 0)),
            str(fc.get("hang", 0)), f"{peak:.0f}", f"{(4 * size) / 1e6 + 100:.0f}",
            f"{c['cpu'] + f['cpu']:.0f}",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(len(head))]
    for r in rows:
        print("  ".join(x.rjust(w) for x, w in zip(r, widths, strict=False)))
    for r in by.values():  # the last result of each kind and mode
        if r.get("misses"):
            print(f"{r['kind']}: cuts that loaded unnoticed, first ones: {r['misses']}")
        if "died" in r or r.get("counts", {}).get("traceback"):
            print(f"--- {r['kind']} {r['mode']}:\n{r['stderr']}")


if __name__ == "__main__":
    sys.exit(main())
