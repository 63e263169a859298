"""miglab.compat.virtio_subsections on live captures: virtio-balloon's page-poison subsection.

The heartbeat guest boots with ``init_on_free=1``, so its balloon driver acks
VIRTIO_BALLOON_F_PAGE_POISON and every build sends the page-poison subsection: QEMU 5.2 as
``vitio-balloon-device/page-poison`` (sic), 7.2 and newer as ``virtio-balloon-device/...``
(commit 243a9284a9, QEMU 6.2).  Captures come from
:func:`miglab.qemu.capture_cache.cached_capture` (shared with tests/test_compat_survival.py);
without QEMU or the guest these skip locally and fail under CI=true.  The guest's survival of
the rename (5.2 -> 7.2, 10.0, 11.1) is judged in tests/test_compat_survival.py.
"""

from __future__ import annotations

import os
import struct
from functools import cache

import pytest

import miglab
from miglab.compat import plan
from miglab.devices.virtio import decode_virtio, encode_virtio
from miglab.qemu import GuestNotFound, QemuNotFound, default_guest, find_qemu
from miglab.qemu.capture_cache import cached_capture
from miglab.vmstate.state import VMState

OLD = b"vitio-balloon-device/page-poison"  # hw/virtio/virtio-balloon.c up to QEMU 6.1
NEW = b"virtio-balloon-device/page-poison"

pytestmark = pytest.mark.qemu


def _balloon(qemu: str) -> VMState:
    """The balloon's state in ``qemu``'s capture (steps copy the states they run on)."""
    try:
        default_guest()
        find_qemu(qemu)
    except (GuestNotFound, QemuNotFound) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI must have it: scripts/setup.sh)")
        pytest.skip(str(exc))
    return _loaded(qemu)


@cache
def _loaded(qemu: str) -> VMState:
    stream = miglab.load(cached_capture(qemu, f"pc-i440fx-{qemu}", "virtio").stream)
    return stream.device("virtio-balloon").payload


def _wire(name: bytes, poison: int) -> bytes:
    """QEMU_VM_SUBSECTION, the name, version 1, poison_val (vmstate_subsection_save)."""
    return b"\x05" + bytes([len(name)]) + name + struct.pack(">II", 1, poison)


@pytest.mark.parametrize(("qemu", "name"), [("5.2", OLD), ("7.2", NEW)])
def test_each_build_sends_page_poison_under_its_own_name(qemu: str, name: bytes) -> None:
    raw = bytes(_balloon(qemu).fields["virtio"])
    assert _wire(name, 0) in raw
    assert (OLD if name == NEW else NEW) not in raw
    part = decode_virtio(raw, "virtio-balloon").fields["device"]
    assert part.subsections[name.decode()].fields == {"poison_val": 0}


def test_5_2_name_is_renamed_for_newer_builds() -> None:
    state = _balloon("5.2")
    (out,), report = plan("virtio-balloon", "5.2", "11.1").run([state])
    raw = bytes(out.fields["virtio"])
    before = bytes(state.fields["virtio"])
    assert raw == before.replace(_wire(OLD, 0), _wire(NEW, 0))
    (change,) = report
    assert change.classification == "safe" and "renamed" in change.reason


def test_newer_name_is_dropped_for_5_2_safe_only_when_poison_is_zero() -> None:
    state = _balloon("7.2")
    before = bytes(state.fields["virtio"])
    (out,), report = plan("virtio-balloon", "7.2", "5.2").run([state])
    assert bytes(out.fields["virtio"]) == before.replace(_wire(NEW, 0), b"")
    assert [c.classification for c in report] == ["safe"]

    part = decode_virtio(before, "virtio-balloon")
    part.fields["device"].subsections[NEW.decode()].fields["poison_val"] = 0xAAAAAAAA
    poisoned = VMState(state.desc, state.version_id, {"virtio": encode_virtio(part)}, {})
    (out,), report = plan("virtio-balloon", "7.2", "5.2").run([poisoned])
    assert bytes(out.fields["virtio"]) == before.replace(_wire(NEW, 0), b"")
    (change,) = report
    assert change.classification == "guest-visible" and "poison_val is 0 there" in change.reason
