#!/usr/bin/env python3
"""Judge, by the running guest's survival, every ordered pair of the four QEMU builds.

Writes data/survival-matrix.csv: one row per (source build, destination build, machine family,
device set), each on the builds' newest machine types, with four ways of moving the guest,
each judged by :func:`miglab.qemu.survives` ("survived", or why not):

* ``qemu_alone``: the source's stream as is, into the destination on its newest machine;
* ``rename_machine``: the same with only the configuration's machine name changed;
* ``qemu_own_way``: both ends on the older of the two newest machine types (the newer build
  started on the older machine type; for new -> old that needs a capture of the newer build on
  the older machine);
* ``miglab``: ``miglab compat --allow-guest-visible`` of the stream, loaded with the
  destination options the conversion reports (``miglab_options``); a refusal says why.

Captures come from :func:`miglab.qemu.capture_cache.cached_capture` (made once, then cached).

    python scripts/survival-matrix.py                 # all 48 cases, 2 at a time
    python scripts/survival-matrix.py --families q35 --sets legacy --jobs 1
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

from miglab.compat import convert_stream
from miglab.errors import MiglabError
from miglab.qemu import survives
from miglab.qemu.capture_cache import cached_capture
from miglab.stream import load, save
from miglab.stream.configuration import CONFIGURATION
from miglab.vmstate.state import VMState

ROOT = Path(__file__).resolve().parents[1]
BUILDS = ("5.2", "7.2", "10.0", "11.1")
COLUMNS = (
    "source", "destination", "family", "devices",
    "qemu_alone", "rename_machine", "qemu_own_way", "miglab", "miglab_options",
)  # fmt: skip


def _newest(family: str, build: str) -> str:
    return f"pc-{family}-{build}"


def _word(verdict) -> str:  # type: ignore[no-untyped-def]
    return "survived" if verdict.survived else verdict.reason.replace("\n", " ")[:300]


def _renamed(path: Path, machine: str, out: Path) -> Path:
    """The stream with only its configuration's machine name changed."""
    stream = load(path)
    config = stream.configuration
    assert config is not None
    raw = machine.encode()
    new = VMState(
        CONFIGURATION,
        config.version_id,
        {**config.fields, "len": len(raw), "name": raw},
        dict(config.subsections),
    )
    save(dataclasses.replace(stream, configuration=new), out)
    return out


def judge_case(case: tuple[str, str, str, str]) -> tuple[str, ...]:
    """The four verdicts of one (source, destination, family, devices) case."""
    src, dst, family, devices = case
    cap = cached_capture(src, _newest(family, src), devices)
    machine = _newest(family, dst)
    with tempfile.TemporaryDirectory(prefix="miglab-matrix-") as tmp:
        alone = _word(survives(cap.stream, qemu=dst, machine=machine, devices=devices, like=cap))
        renamed = _renamed(cap.stream, machine, Path(tmp) / "renamed.mig")
        rename = _word(survives(renamed, qemu=dst, machine=machine, devices=devices, like=cap))
        older = _newest(family, min(src, dst, key=lambda v: tuple(map(int, v.split(".")))))
        if older == _newest(family, src):
            own = survives(cap.stream, qemu=dst, machine=older, devices=devices, like=cap)
        else:
            low = cached_capture(src, older, devices)
            own = survives(low.stream, qemu=dst, machine=older, devices=devices, like=low)
        options = ""
        try:
            out, report = convert_stream(
                load(cap.stream), to_qemu=dst, machine=machine, from_qemu=src,
                allow_guest_visible=True,
            )  # fmt: skip
            save(out, Path(tmp) / "miglab.mig")
            options = " ".join(report.options)
            mig = _word(
                survives(
                    Path(tmp) / "miglab.mig",
                    qemu=dst,
                    machine=machine,
                    devices=devices,
                    like=cap,
                    extra_args=report.options,
                )
            )
        except MiglabError as exc:
            mig = f"miglab refused: {str(exc).splitlines()[0]}"
    return (src, dst, family, devices, alone, rename, _word(own), mig, options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="q35,i440fx")
    parser.add_argument("--sets", default="virtio,legacy")
    parser.add_argument("--jobs", type=int, default=2, help="cases judged at once")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "survival-matrix.csv")
    args = parser.parse_args(argv)
    cases = [
        (a, b, f, d)
        for f in args.families.split(",")
        for d in args.sets.split(",")
        for a, b in itertools.permutations(BUILDS, 2)
    ]
    start = time.monotonic()
    rows: list[tuple[str, ...]] = []
    order = {c: i for i, c in enumerate(cases)}
    with Pool(args.jobs) as pool:
        for row in pool.imap_unordered(judge_case, cases):
            rows.append(row)
            rows.sort(key=lambda r: order[(r[0], r[1], r[2], r[3])])
            with args.out.open("w", newline="") as fh:  # after each case: a partial run counts
                w = csv.writer(fh)
                w.writerow(COLUMNS)
                w.writerows(rows)
            print(" | ".join(row[:4]), "->", row[7][:60], f"({len(rows)}/{len(cases)})", flush=True)
    for col, i in (("qemu_alone", 4), ("rename_machine", 5), ("qemu_own_way", 6), ("miglab", 7)):
        print(f"{col}: {sum(r[i] == 'survived' for r in rows)}/{len(rows)} survived")
    print(f"{len(rows)} cases in {time.monotonic() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
