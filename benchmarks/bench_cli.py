"""The everyday commands as whole processes (issue 14, section 1), beside QEMU's own script.

What users feel is the whole process: interpreter, imports, work, output.
Each figure is the median of ``--repeat`` runs of a fresh process (time from
spawn to exit, peak RSS from ``wait4``); with ``--peer`` the runs alternate
with QEMU's ``scripts/analyze-migration.py`` on the same stream, so both
see the same machine load.  The floor is measured twice, with the
interpreter's site-packages and without (``-S``): the difference is what its
``.pth`` files cost every process (an editable install by setuptools' import
finder alone costs ~25 ms here); the ones that run code are listed at the end.
Goals (issue 14):

* ``miglab --version``                                     <= 60 ms
* ``miglab inspect`` of a 256 MiB random-RAM stream        <= 0.12 s, <= 60 MB peak
* ``miglab dump`` of a ~2 MB device-heavy 7.2 stream       <= 0.12 s
* ``miglab verify`` of both                                within 1.5x of ``inspect``

The streams are made in a temporary directory by real QEMU 7.2 (a 256 MiB
guest backed by a file of random bytes; a 16 MiB guest with the devices of
every pc-i440fx-7.2 recipe in data/manifest.json and more NICs), or, with
``--synthetic`` or without QEMU, by miglab's synthetic generator and the most
device-heavy stream in data/.

The peer script is not part of miglab: take it from QEMU's repository for
the measurement (``--peer PATH`` or ``MIGLAB_PEER=PATH``); its default mode
(``-d state``, the whole decoded state as JSON) is what it offers for both
inspect and dump.

With ``--before TREE`` (another miglab source tree, e.g. ``git archive main
miglab`` unpacked) every command also runs from that tree, alternating with
this one, and its wall, peak and CPU seconds print beside: on a loaded
machine compare the CPU columns.

With ``--instructions`` each command also runs once under valgrind's
callgrind (``PYTHONHASHSEED=0``), and the millions of instructions the whole
process executed print beside its times (``Minstr``): a count the machine's
load does not move (+-0.3 M run to run), where ``perf stat -e instructions``
has no counters (a virtual machine).  A run is ~50x slower than a plain one.

Usage: ``python benchmarks/bench_cli.py [--repeat 9] [--work DIR] [--peer PATH] [--synthetic]
[--before TREE] [--instructions]``
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# What the ``miglab`` console script runs (without a pyenv/venv shim in front).
MIGLAB = [sys.executable, "-c", "import sys; from miglab.cli import main; sys.exit(main())"]
TIME = "/usr/bin/time"  # GNU time (Debian package "time")
EXTRA_NICS = ["e1000,mac=52:54:00:12:34:05", "e1000,mac=52:54:00:12:34:06"]
EXTRA_NICS += ["e1000e,mac=52:54:00:12:34:07,romfile="]


def run_timed(argv: list[str], cwd: Path, code: Path = ROOT) -> tuple[float, float, int, float]:
    """Seconds from spawn to exit, peak RSS in MB, exit status and CPU seconds of one process.

    The peak comes from GNU time (``/usr/bin/time``), a small parent: the
    rusage of a child spawned by this process would count this process's
    pages (a vfork child shares them until it execs).  The CPU seconds (user
    + system) are the rusage of that parent, which holds its child's, to the
    microsecond (GNU time prints centiseconds).  On a loaded machine the CPU
    time says what the work costs when the wall clock does not.
    """
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "-f", "%M", "-o", rss.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak_kib = rss.read().split()[-1]
    return dt, int(peak_kib) * 1024 / 1e6, proc.returncode, usage.ru_utime + usage.ru_stime


def instructions(argv: list[str], cwd: Path, code: Path = ROOT) -> float | None:
    """Millions of instructions one process executes (valgrind's callgrind), None without it."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory(prefix="bench-cli-cg-") as tmp:
        log = Path(tmp) / "log"
        callgrind = ["--tool=callgrind", f"--callgrind-out-file={tmp}/out", f"--log-file={log}"]
        subprocess.run(
            [valgrind, *callgrind, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            check=False,
        )
        found = re.search(r"Collected : (\d+)", log.read_text())
    return int(found.group(1)) / 1e6 if found else None


def cpu_median(runs: list[tuple[float, float, int, float]]) -> float:
    """The median CPU seconds of :func:`run_timed` results."""
    return statistics.median(r[3] for r in runs)


def medians(runs: Sequence[tuple[Any, ...]]) -> tuple[float, float, int]:
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        int(max(r[2] for r in runs)),
    )


def make_streams(work: Path, synthetic: bool) -> tuple[Path, Path]:
    """The 256 MiB random-RAM stream and the device-heavy one."""
    from bench_load import make_random_stream

    heavy = work / "heavy-7.2.mig"
    if not synthetic:
        try:
            from miglab.qemu import QemuNotFound, find_qemu

            qemu = find_qemu("7.2")
        except (ImportError, QemuNotFound):
            synthetic = True
    if synthetic:
        return make_random_stream(work / "random-256M.mig", 256, work, True), (
            ROOT / "data" / "q72-pc-i440fx-7.2-net.mig"
        )
    manifest = json.loads((ROOT / "data" / "manifest.json").read_text())
    devices, extra = [], []
    for r in manifest["streams"]:
        if r["file"].startswith("q72-pc-i440fx-7.2-") and r["run_seconds"] is None:
            devices += r["devices"]
            extra += r["extra_args"]
    qemu.make_stream(
        heavy,
        machine="pc-i440fx-7.2",
        devices=devices + EXTRA_NICS,
        memory="16M",
        extra_args=extra,
        timeout=300,
    )
    return make_random_stream(work / "random-256M.mig", 256, work, False), heavy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--work", type=Path, help="where to make the streams (default: temp dir)")
    parser.add_argument("--peer", type=Path, default=os.environ.get("MIGLAB_PEER") or None)
    parser.add_argument("--synthetic", action="store_true", help="streams from miglab, not QEMU")
    parser.add_argument(
        "--before",
        type=Path,
        help="another miglab source tree (e.g. `git archive main miglab` unpacked) to time alike",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count each command's instructions once under valgrind's callgrind (slow)",
    )
    args = parser.parse_args()
    # An installed package has its bytecode compiled; a checkout may not
    # (PYTHONDONTWRITEBYTECODE), which would charge compilation to start-up.
    for tree in (ROOT, args.before):
        if tree is not None:
            compileall.compile_dir(tree / "miglab", quiet=2)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        bench(args.work, args)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            bench(Path(tmp), args)


def bench(work: Path, args: argparse.Namespace) -> None:
    rand, heavy = make_streams(work, args.synthetic)
    print(f"streams: {rand.name} {rand.stat().st_size / 1e6:.1f} MB, ", end="")
    print(f"{heavy.name} {heavy.stat().st_size / 1e6:.2f} MB (device-heavy)")
    peer = [sys.executable, str(args.peer)] if args.peer else None
    cases: list[tuple[str, list[str], list[str] | None]] = [
        ("floor", [sys.executable, "-c", "pass"], None),
        ("nosite", [sys.executable, "-S", "-c", "pass"], None),
        ("--version", [*MIGLAB, "--version"], None),
        ("inspect rand", [*MIGLAB, "inspect", str(rand)], peer and [*peer, "-f", str(rand)]),
        ("verify rand", [*MIGLAB, "verify", str(rand)], None),
        ("dump heavy", [*MIGLAB, "dump", str(heavy)], peer and [*peer, "-f", str(heavy)]),
        ("inspect heavy", [*MIGLAB, "inspect", str(heavy)], None),
        ("verify heavy", [*MIGLAB, "verify", str(heavy)], None),
    ]
    label = {
        "floor": "python3 -c pass (the floor)",
        "nosite": "python3 -S -c pass (no site-packages)",
        "rand": rand.name,
        "heavy": heavy.name,
    }
    print(f"whole-process medians of {args.repeat} runs (peer runs alternate with miglab's)")
    print("(cpu: user + system seconds; on a loaded machine it shows the work, the wall the load)")
    print(f"  {'command':38s} {'miglab':>8s} {'peak':>8s} {'cpu':>7s}", end="")
    print(f"   {'peer':>8s} {'peak':>8s} {'cpu':>7s}", end="")
    print(f"   {'before':>8s} {'peak':>8s} {'cpu':>7s}" if args.before else "")
    r: dict[str, tuple[float, float, int]] = {}
    counts: list[tuple[str, list[float | None]]] = []
    for name, argv, peer_argv in cases:
        mine, theirs, before = [], [], []
        for _ in range(args.repeat):
            mine.append(run_timed(argv, work))
            if peer_argv:
                theirs.append(run_timed(peer_argv, work))
            if args.before and name not in ("floor", "nosite"):
                before.append(run_timed(argv, work, args.before))
        r[name] = medians(mine)
        t, rss, status = r[name]
        words = name.split()
        shown = " ".join(label.get(w, w) for w in words)
        line = f"  {shown:38s} {t:7.3f}s {rss:6.1f}MB {cpu_median(mine):6.3f}s"
        if theirs:
            pt, prss, pstatus = medians(theirs)
            line += f"   {pt:7.3f}s {prss:6.1f}MB {cpu_median(theirs):6.3f}s"
            line += f" (exit {pstatus})" if pstatus else ""
        elif before:
            line += " " * 30
        if before:
            bt, brss, bstatus = medians(before)
            line += f"   {bt:7.3f}s {brss:6.1f}MB {cpu_median(before):6.3f}s"
            line += f" (exit {bstatus})" if bstatus else ""
        print(line + (f"  (exit {status})" if status else "") + f"  load {os.getloadavg()[0]:.1f}")
        if args.instructions:
            runs = [(argv, ROOT), (peer_argv, ROOT)]
            runs += [(argv, args.before)] if args.before and name not in ("floor", "nosite") else []
            counts.append((shown, [instructions(a, work, code) if a else None for a, code in runs]))
    if counts:
        print("instructions executed by the whole process, millions (callgrind, PYTHONHASHSEED=0)")
        print(
            f"  {'command':38s} {'miglab':>8s} {'peer':>8s}"
            + (f" {'before':>8s}" * bool(args.before))
        )
        for shown, values in counts:
            cells = " ".join("       -" if v is None else f"{v:8.1f}" for v in values)
            print(f"  {shown:38s} {cells}")
    floor = r["floor"][0]
    print("goals:")
    goals = [
        ("--version <= 60 ms", r["--version"][0] <= 0.060, f"{r['--version'][0] * 1000:.0f} ms"),
        (
            "inspect 256 MiB <= 0.12 s",
            r["inspect rand"][0] <= 0.12,
            f"{r['inspect rand'][0]:.3f} s",
        ),
        ("inspect 256 MiB <= 60 MB", r["inspect rand"][1] <= 60, f"{r['inspect rand'][1]:.1f} MB"),
        ("dump device-heavy <= 0.12 s", r["dump heavy"][0] <= 0.12, f"{r['dump heavy'][0]:.3f} s"),
    ]
    for which in ("rand", "heavy"):
        ratio = r[f"verify {which}"][0] / r[f"inspect {which}"][0]
        goals.append((f"verify/inspect {which} <= 1.5", ratio <= 1.5, f"{ratio:.2f}x"))
    for goal, ok, value in goals:
        print(f"  {'ok  ' if ok else 'MISS'} {goal:32s} {value}")
    print(
        f"  (the interpreter alone, with this machine's site-packages, takes {floor * 1000:.0f} ms;"
        f" {(floor - r['nosite'][0]) * 1000:.0f} ms of it is site-packages)"
    )
    for pth in start_up_hooks():
        print(f"  site-packages runs code at every start: {pth}")


def start_up_hooks() -> list[str]:
    """The .pth files of this interpreter's site-packages that run code at every start.

    An editable install by setuptools' import finder (a flat layout without
    ``package-dir``) imports pathlib, re and urllib.parse that way, ~25 ms in
    every process before miglab's first line; pyproject.toml's ``package-dir``
    makes it a plain path line (reinstall with ``pip install -e .``).
    """
    import site

    hooks = []
    for folder in site.getsitepackages():
        for pth in sorted(Path(folder).glob("*.pth")):
            lines = pth.read_text(errors="replace").splitlines()
            if any(line.startswith(("import ", "import\t")) for line in lines):
                hooks.append(pth.name)
    return hooks


if __name__ == "__main__":
    main()
