"""miglab.analysis.elf_core and ``miglab export-elf``: guest RAM as an ELF core.

The judge is the guest kernel itself: its banner (``Linux version ...``) sits in vmlinux's
first ``PT_LOAD`` segment, whose ``PhysAddr`` is where the kernel runs (``nokaslr``); the
core, read through its own program headers as ``readelf`` lists them, must hold the same
bytes at that guest-physical address.  The split around the PCI hole is
``tests/analysis/test_elf_core.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


def _loads(elf: Path) -> list[tuple[int, int, int]]:
    """(file offset, physical address, file size) of each PT_LOAD, as readelf lists them."""
    out = subprocess.run(["readelf", "-lW", str(elf)], capture_output=True, text=True, check=True)
    rows = re.findall(r"^\s+LOAD\s+(0x\w+)\s+0x\w+\s+(0x\w+)\s+(0x\w+)", out.stdout, re.M)
    return [(int(o, 16), int(p, 16), int(s, 16)) for o, p, s in rows]


@pytest.mark.qemu
@pytest.mark.xdist_group("survival")  # the cached capture the survival tests share
def test_kernel_banner_is_at_its_physical_address(tmp_path: Path) -> None:
    from miglab.qemu.capture_cache import cached_capture
    from miglab.qemu.guest import default_guest

    capture = cached_capture("7.2", "pc-q35-7.2", "legacy")
    vmlinux = default_guest().kernel
    image = vmlinux.read_bytes()
    at = image.index(b"Linux version ")
    banner = image[at : image.index(b"\n", at)]
    offset, phys, _ = next(
        (o, p, s) for o, p, s in _loads(vmlinux) if o <= at < o + s
    )  # the kernel's own load address of the banner
    where = phys + at - offset
    core = tmp_path / "core.elf"
    run = subprocess.run(
        [sys.executable, "-m", "miglab.cli", "export-elf", str(capture.stream), "-o", str(core)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    data = core.read_bytes()
    hits = [o + where - p for o, p, s in _loads(core) if p <= where < p + s]
    assert len(hits) == 1 and data[hits[0] : hits[0] + len(banner)] == banner
    assert core.stat().st_blocks * 512 < core.stat().st_size  # zero pages are holes
