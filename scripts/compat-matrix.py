#!/usr/bin/env python3
"""Judge every shipped stream on every QEMU build that has its machine type.

Writes data/compat-matrix.csv so notebooks can show which source -> destination
pairs load without needing QEMU.  Each row: the stream file, a source label
(``QEMU 10.0 pc-q35-7.2 net``), the destination (``QEMU 7.2``) and the machine type it
runs (the stream's own, or for a machine newer than it knows its newest of the same
family: the new->old case), the mode
(``raw``: the stream as its source wrote it; ``compat``: after
``miglab.compat.convert_stream`` rewrote it for the destination), QEMU's
verdict and the first line of its complaint.

    python scripts/compat-matrix.py                     # raw and compat, every stream
    python scripts/compat-matrix.py --modes raw --only 'q100-*'
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import re
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from miglab.compat import convert_stream
from miglab.errors import CompatError
from miglab.qemu import find_qemu
from miglab.stream import load, save

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
COLUMNS = ("file", "source", "destination", "machine", "mode", "accepted", "status", "reason")
#: Per build: (oldest, newest) pc machine version it knows (10.0 dropped pc < 2.4).
MACHINES = {"7.2": ((2, 0), (7, 2)), "10.0": ((2, 4), (10, 0))}


def _destination_machine(machine: str, dest: str) -> str | None:
    """The machine type to judge on: the stream's own, or for a machine newer than the
    destination knows, the destination's newest of the same family (the new->old case);
    None for one older than it knows."""
    family, version = machine.rsplit("-", 1)
    v = tuple(int(x) for x in version.split("."))
    oldest, newest = MACHINES[dest]
    if v < oldest:
        return None
    if v > newest:
        return f"{family}-{newest[0]}.{newest[1]}"
    return machine


def _reason(stderr: str) -> str:
    """QEMU's first complaint line, without the program path prefix; warnings (``nic ... has
    no peer``) only when there is nothing else."""
    lines = [re.sub(r"^\S*qemu-system-x86_64: ", "", x.strip()) for x in stderr.splitlines()]
    lines = [x for x in lines if x]
    errors = [x for x in lines if not x.startswith("warning:")]
    return (errors or lines or [""])[0]


def _convert(path: Path, source: str, machine: str, dest: str, out: Path) -> Path:
    """``miglab compat``: rewrite a stream QEMU ``source`` wrote for QEMU ``dest`` running
    ``machine`` (the manifest says which build wrote it: older machine types exist in both).

    Guest-visible changes are allowed, as the matrix asks whether QEMU loads the result;
    the notebook shows which changes those are.
    """
    converted, _ = convert_stream(
        load(path), to_qemu=dest, machine=machine, from_qemu=source, allow_guest_visible=True
    )
    save(converted, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="raw,compat", help="comma list of raw, compat")
    parser.add_argument("--only", default="*", help="glob of data/ stream files")
    parser.add_argument("--out", type=Path, default=DATA / "compat-matrix.csv")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    streams = json.loads((DATA / "manifest.json").read_text())["streams"]
    qemus = {v: find_qemu(v) for v in MACHINES}
    jobs = [
        (s, dest, mode)
        for s in streams
        if fnmatch.fnmatch(s["file"], args.only)
        for dest in MACHINES
        if _destination_machine(s["machine"], dest) is not None
        for mode in modes
        if not (mode == "compat" and dest == s["qemu"])
    ]

    def judge(job: tuple[dict, str, str]) -> tuple:
        s, dest, mode = job
        machine = _destination_machine(s["machine"], dest)
        assert machine is not None
        tag = Path(s["file"]).stem.split(s["machine"] + "-", 1)[1]
        source = f"QEMU {s['qemu']} {s['machine']} {tag}"
        label = (s["file"], source, f"QEMU {dest}", machine, mode)
        with tempfile.TemporaryDirectory() as tmp:
            path = DATA / s["file"]
            if mode == "compat":
                try:
                    path = _convert(path, s["qemu"], machine, dest, Path(tmp) / "out.mig")
                except CompatError as exc:
                    return (*label, False, "compat-error", str(exc).splitlines()[0])
            r = qemus[dest].judge(
                path,
                machine=machine,
                memory=s["memory"],
                devices=s["devices"],
                extra_args=s["extra_args"],
            )
        return (
            *label,
            r.accepted,
            r.status,
            "" if r.accepted else _reason(r.stderr),
        )

    # One at a time: miglab.qemu drives each QEMU through its own asyncio loop.
    rows = [judge(job) for job in tqdm(jobs, desc="judging")]
    with args.out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    print(f"{len(rows)} verdicts, {sum(r[5] for r in rows)} accepted -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
