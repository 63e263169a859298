"""miglab.compat judged by a running guest: every ordered pair of QEMU 5.2, 7.2, 10.0, 11.1.

A case is (source build, destination build, machine family, device set), each build on its
newest machine type.  The source's live capture comes from
:func:`miglab.qemu.capture_cache.cached_capture` (made once per build x machine x set, shared
by xdist workers through a file lock, cached under ``${MIGLAB_CACHE:-/var/cache/miglab}``), so
an empty cache only costs the 16 boots.  Each case asserts:

* the stream as is is judged, and QEMU alone refuses it at once, naming the machine type it
  was sent (the machine types differ);
* after ``convert_stream`` with the destination options it reports, the guest survives; or,
  where the destination's device cannot take back the MSI-X a guest driver enabled (virtio
  set: virtio-rng on 5.2 machines, virtio-balloon on 5.2 and 7.2 machines; those builds take no
  ``vectors`` property for them), miglab refuses and says so.

CI runs the 12 cases of :data:`CI_CASES`: every ordered pair once, each device set on six of
them and each machine family on six, so every build pair, set and family is judged (among
them the virtio-balloon page-poison rename 5.2 -> 7.2, a balloon MSI-X kept by a destination
option 7.2 -> 10.0, and an MSI-X refusal 10.0 -> 7.2); ``MIGLAB_COMPAT_FULL=1`` runs all 48
(``scripts/survival-matrix.py`` writes them all to data/survival-matrix.csv).  Without QEMU
or the guest these skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

import miglab
from miglab.compat import convert_stream
from miglab.errors import CompatError
from miglab.qemu import Capture, GuestNotFound, QemuNotFound, default_guest, find_qemu, survives
from miglab.qemu.capture_cache import cached_capture

pytestmark = pytest.mark.qemu

BUILDS = ("5.2", "7.2", "10.0", "11.1")
PAIRS = list(itertools.permutations(BUILDS, 2))
ALL_CASES = [
    (a, b, f, d) for f in ("q35", "i440fx") for d in ("virtio", "legacy") for a, b in PAIRS
]
CI_CASES = [
    ("5.2", "7.2", "i440fx", "virtio"),
    ("5.2", "10.0", "q35", "legacy"),
    ("5.2", "11.1", "q35", "virtio"),
    ("7.2", "5.2", "i440fx", "legacy"),
    ("7.2", "10.0", "i440fx", "virtio"),
    ("7.2", "11.1", "q35", "legacy"),
    ("10.0", "5.2", "i440fx", "legacy"),
    ("10.0", "7.2", "q35", "virtio"),
    ("10.0", "11.1", "i440fx", "virtio"),
    ("11.1", "5.2", "i440fx", "legacy"),
    ("11.1", "7.2", "q35", "legacy"),
    ("11.1", "10.0", "q35", "virtio"),
]
CASES = ALL_CASES if os.environ.get("MIGLAB_COMPAT_FULL") == "1" else CI_CASES


def _refused_msix(src: str, dst: str, devices: str) -> bool:
    """Cases where a virtio device loses the MSI-X its driver enabled, with no property to
    keep it: virtio-rng has MSI-X from 7.2 machines on (hw_compat_7_1) and QEMU 5.2's device
    has no ``vectors``; virtio-balloon has it from 10.0 machines on (hw_compat_9_2) and
    5.2's and 7.2's devices have no ``vectors``."""
    if devices != "virtio":
        return False
    return dst == "5.2" or (dst == "7.2" and src in ("10.0", "11.1"))


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI must have it: scripts/setup.sh)")
    pytest.skip(what)


def _source(src: str, dst: str, family: str, devices: str) -> Capture:
    try:
        default_guest()
        find_qemu(src)
        find_qemu(dst)
    except (GuestNotFound, QemuNotFound) as exc:
        _missing(str(exc))
    return cached_capture(src, f"pc-{family}-{src}", devices)


@pytest.mark.parametrize(
    ("src", "dst", "family", "devices"), CASES, ids=["-".join(c) for c in CASES]
)
def test_running_guest_survives_miglab_compat(
    src: str,
    dst: str,
    family: str,
    devices: str,
    tmp_path: Path,
    record_property: pytest.RecordProperty,
) -> None:
    cap = _source(src, dst, family, devices)
    machine = f"pc-{family}-{dst}"
    as_is = survives(cap.stream, qemu=dst, machine=machine, devices=devices, like=cap, timeout=60)
    record_property("as_is", "survived" if as_is.survived else as_is.reason)
    assert not as_is.survived
    assert as_is.status == "exited", as_is.reason  # QEMU refuses it at once, not by timeout
    assert f"Machine type received is 'pc-{family}-{src}'" in as_is.qemu_error, as_is.reason

    stream = miglab.load(cap.stream)
    if _refused_msix(src, dst, devices):
        with pytest.raises(CompatError, match=r"enabled MSI-X.*no destination property"):
            convert_stream(stream, to_qemu=dst, machine=machine, from_qemu=src,
                           allow_guest_visible=True)  # fmt: skip
        return
    out, report = convert_stream(
        stream, to_qemu=dst, machine=machine, from_qemu=src, allow_guest_visible=True
    )
    miglab.save(out, tmp_path / "converted.mig")
    verdict = survives(
        tmp_path / "converted.mig",
        qemu=dst,
        machine=machine,
        devices=devices,
        like=cap,
        extra_args=report.options,
    )
    record_property("miglab", "survived" if verdict.survived else verdict.reason)
    assert verdict.survived, f"{verdict.reason}\n{report}"
    assert verdict.counter_after is not None and verdict.counter_after > cap.last_counter
