"""Real QEMU as data source and judge: find the four builds, make streams, judge them.

    >>> from miglab.qemu import QEMU_VERSIONS, find_qemu
    >>> QEMU_VERSIONS
    ('5.2', '7.2', '10.0', '11.1')
    >>> qemu = find_qemu("11.1")
    >>> qemu.judge(qemu.make_stream(Path("s.mig"), machine="q35"), machine="q35").accepted
    True

A running Linux guest is the stronger judge (``scripts/build-guest.sh`` builds it):

    >>> from miglab.qemu import capture, survives
    >>> survives(capture("live.mig", qemu="7.2", machine="pc-q35-7.2")).survived
    True

Every call starts its own QEMU, bounded in time, and leaves no process or temp file behind;
the chroot builds (5.2, 11.1) take the same arguments and leave no mount behind.
"""

from __future__ import annotations

from miglab.qemu._locate import QEMU_VERSIONS, QemuNotFound, available
from miglab.qemu._process import QemuError, QemuTimeout, private_event_loop
from miglab.qemu.capturing import Capture, capture
from miglab.qemu.guest import DEVICE_SETS, DeviceSet, GuestNotFound, GuestSpec, default_guest
from miglab.qemu.heartbeat import Console, Heartbeat, parse_console
from miglab.qemu.runner import JudgeResult, QemuBinary, find_qemu
from miglab.qemu.survival import Survival, survives

__all__ = (
    "DEVICE_SETS",
    "QEMU_VERSIONS",
    "Capture",
    "Console",
    "DeviceSet",
    "GuestNotFound",
    "GuestSpec",
    "Heartbeat",
    "JudgeResult",
    "QemuBinary",
    "QemuError",
    "QemuNotFound",
    "QemuTimeout",
    "Survival",
    "available",
    "capture",
    "default_guest",
    "find_qemu",
    "parse_console",
    "private_event_loop",
    "survives",
)


def __dir__() -> tuple[str, ...]:
    return __all__
