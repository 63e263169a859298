#!/usr/bin/env python3
"""Time the test guest's boot: seconds from starting QEMU to the first heartbeat.

Boots the guest of ``scripts/build-guest.sh`` under TCG on each installed QEMU build, machine
type and device set, and prints the wall time to ``MIGLAB-READY`` and to the first heartbeat
with every network answering, plus anything the guest or QEMU complained about (a module that
did not load, a kernel warning, QEMU's stderr)::

    python benchmarks/bench_guest_boot.py --qemu 7.2 --machine pc-q35-7.2
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from miglab.qemu import QEMU_VERSIONS, available, find_qemu
from miglab.qemu.guest import DEVICE_SETS, default_guest, vm_args
from miglab.qemu.heartbeat import parse_console

#: The newest machine types of each build, by family.
MACHINES = {"q35": "pc-q35-{v}", "i440fx": "pc-i440fx-{v}"}


def boot(version: str, machine: str, devices: str, limit: float) -> str:
    """Boot once; return one report line."""
    binary = find_qemu(version)
    with tempfile.TemporaryDirectory(prefix="miglab-boot-") as tmp:
        console = Path(tmp) / "console.log"
        argv = binary.command(
            *vm_args(default_guest(), DEVICE_SETS[devices], machine=machine, console=console)
        )
        start = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**__import__("os").environ, **binary.env}, text=True,
        )  # fmt: skip
        ready = beat = None
        try:
            while time.monotonic() - start < limit and proc.poll() is None:
                text = console.read_text(errors="replace") if console.exists() else ""
                if ready is None and "MIGLAB-READY" in text:
                    ready = time.monotonic() - start
                last = parse_console(text).last
                if last is not None and last.net_ok and len(last.nets) == 2:
                    beat = time.monotonic() - start
                    break
                time.sleep(0.1)
        finally:
            proc.kill()
            _, stderr = proc.communicate()
        text = console.read_text(errors="replace") if console.exists() else ""
    notes = [line for line in text.splitlines() if "FAIL" in line or "WARNING" in line]
    notes += [f"stderr: {line}" for line in stderr.splitlines()]
    fmt = lambda t: f"{t:5.1f}s" if t is not None else "  -  "  # noqa: E731
    return f"{version:5} {machine:16} {devices:7} ready {fmt(ready)} beat {fmt(beat)} {notes}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qemu", action="append", choices=QEMU_VERSIONS)
    parser.add_argument("--machine", action="append", help="default: newest q35 and i440fx")
    parser.add_argument("--devices", action="append", choices=sorted(DEVICE_SETS))
    parser.add_argument("--limit", type=float, default=90, help="seconds per boot")
    args = parser.parse_args()
    for version in args.qemu or [v for v in QEMU_VERSIONS if available(v)]:
        machines = args.machine or [m.format(v=version) for m in MACHINES.values()]
        for machine in machines:
            for devices in args.devices or sorted(DEVICE_SETS):
                print(boot(version, machine, devices, args.limit), flush=True)


if __name__ == "__main__":
    main()
