"""The fuzz harness in CI: the seeds replayed in-process, then a bounded atheris run.

The long run is ``python fuzz/run.py --hours 4`` (fuzz/README.md); this is
the same harness for about 40 seconds.  Any finding (an exception other
than MiglabError, a unit over a second, memory over the RSS limit) makes
libFuzzer write an artifact and exit non-zero, and the test fails with it.
"""

from __future__ import annotations

import contextlib
import random
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

FUZZ = ROOT / "fuzz"
sys.path.insert(0, str(FUZZ))

import pytest  # noqa: E402
import seeds  # noqa: E402
import targets  # noqa: E402

import miglab  # noqa: E402
from miglab.errors import MiglabError  # noqa: E402

SMOKE_SECONDS = 40  # plus a few seconds of seeds and warm-up (fuzz/run.py warm)


def test_targets_cover_every_reader():
    names = set(targets.TARGETS)
    assert {
        "load",
        "verify",
        "xbzrle",
        "qcow2",
        "slirp",
        "postcopy",
        "live",
        "diff",
        "fleet",
    } <= names
    from miglab import encoders

    assert {f"decode:{n}" for n in encoders.names()} <= names
    assert {"schema", "check-schemas"} <= names


def test_every_seed_runs_clean():
    """Valid seeds go through every target with at most a MiglabError."""
    count = 0
    for name, data in seeds.seeds():
        targets.run_target(name, data)
        count += 1
    assert count >= 100


def test_every_new_surface_has_seeds_that_run():
    """qcow2 images, slirp payloads, postcopy blobs, live streams, diff pairs, fleet files:
    each target has seeds, and real-shaped ones get through (qcow2's state is the tiny stream)."""
    made: dict[str, int] = {}
    for name, data in seeds.surface_seeds():
        made[name] = made.get(name, 0) + 1
        if name in ("qcow2", "slirp", "diff", "fleet"):
            targets.TARGETS[name](data)  # these seeds are valid: no error at all
    assert made.keys() == {"qcow2", "slirp", "postcopy", "live", "diff", "fleet"}
    assert made["qcow2"] == 2  # one and two snapshots (qemu-img is installed with QEMU)


@pytest.mark.parametrize("name", ["qcow2", "slirp", "postcopy", "live", "diff"])
def test_new_surface_cuts_and_flips_are_clean_errors(name: str):
    """24 cuts and 24 bit flips of each new surface's first seed: a MiglabError at most
    (the targets themselves raise AssertionError when a check fails: a write-back that
    differs, a pump holding more than its input)."""
    data = bytearray(next(d for n, d in seeds.surface_seeds() if n == name))
    rng = random.Random(17)
    for n in sorted(rng.sample(range(len(data)), 24)):
        targets.run_target(name, bytes(data[:n]))
    for _ in range(24):
        at, bit = rng.randrange(len(data)), 1 << rng.randrange(8)
        data[at] ^= bit
        try:
            targets.run_target(name, bytes(data))
        finally:
            data[at] ^= bit


CONTAINERS = dict(seeds.container_seeds())


def test_container_seeds_load_in_their_container():
    names = {k: type(miglab.load(v).container).__name__ for k, v in CONTAINERS.items()}
    assert names == {
        "mapped-ram": "MappedRam",
        "libvirt-raw": "LibvirtSave",
        "libvirt-gzip": "LibvirtSave",
        "gzip": "Compressed",
    }


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_container_cuts_and_flips_are_clean_errors(kind: str):
    """48 cuts and 48 bit flips of each container: a MiglabError or a clean load, nothing else."""
    data = bytearray(CONTAINERS[kind])
    rng = random.Random(17)
    head = min(len(data), 1 << 16)  # mapped-ram's page area is megabytes of zeros
    for n in sorted({*range(0, 16), *rng.sample(range(head), 32)}):
        with pytest.raises(MiglabError):
            miglab.load(memoryview(data)[:n])
    for _ in range(48):
        at, bit = rng.randrange(head), 1 << rng.randrange(8)
        data[at] ^= bit
        try:
            with contextlib.suppress(MiglabError):
                miglab.load(memoryview(data))  # load only: verify would scan mapped-ram's MBs
        finally:
            data[at] ^= bit


def test_fuzz_smoke(tmp_path: Path):
    proc = subprocess.run(
        [
            # Through a shell that forks: libFuzzer's memory limit reads getrusage's peak RSS,
            # which Linux carries across exec from the process that execs, so a fuzzer started
            # straight from this xdist worker (often > 1 GB by now) begins "over the limit".
            "sh",
            "-c",
            '"$@"; exit $?',
            "sh",
            sys.executable,
            str(FUZZ / "run.py"),
            "--seconds",
            str(SMOKE_SECONDS),
            "--max-len",
            "65536",
            "--corpus",
            str(tmp_path / "corpus"),
            "--artifacts",
            str(tmp_path / "artifacts"),
        ],
        capture_output=True,
        text=True,
        timeout=SMOKE_SECONDS + 120,
        cwd=ROOT,
    )
    findings = sorted(p.name for p in (tmp_path / "artifacts").glob("*-*"))
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0 and not findings, f"fuzz findings {findings}:\n{tail}"
    runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", proc.stderr)
    assert runs is not None and int(runs.group(1)) > 500, tail


def test_a_qcow2_image_cut_inside_a_refcount_block_is_truncated():
    """hostile_figures found cuts of a qcow2 image that loaded: the last clusters were
    refcount blocks, which reading a VM state does not need (QEMU writes them whole)."""
    import struct

    from miglab.errors import TruncatedStreamError

    data = next(d for n, d in seeds.surface_seeds() if n == "qcow2")
    cs = 1 << struct.unpack_from(">I", data, 20)[0]
    rt_off = struct.unpack_from(">Q", data, 48)[0]
    table = struct.unpack_from(f">{cs // 8}Q", data, rt_off)
    i, block = max(((i, e & ~0x1FF) for i, e in enumerate(table) if e), key=lambda x: x[1])
    miglab.load(data)  # whole, it loads
    with pytest.raises(TruncatedStreamError, match="refcount block") as info:
        miglab.load(data[: block + cs - 1])
    assert info.value.offset == rt_off + 8 * i
