"""Real QEMU as data source and judge: find the four builds, make streams, judge them.

    >>> from miglab.qemu import QEMU_VERSIONS, find_qemu
    >>> QEMU_VERSIONS
    ('5.2', '7.2', '10.0', '11.1')
    >>> qemu = find_qemu("11.1")
    >>> qemu.judge(qemu.make_stream(Path("s.mig"), machine="q35"), machine="q35").accepted
    True

Every call starts its own QEMU, bounded in time, and leaves no process or temp file behind;
the chroot builds (5.2, 11.1) take the same arguments and leave no mount behind.
"""

from __future__ import annotations

from miglab.qemu._locate import QEMU_VERSIONS, QemuNotFound, available
from miglab.qemu._process import QemuError, QemuTimeout
from miglab.qemu.runner import JudgeResult, QemuBinary, find_qemu

__all__ = (
    "QEMU_VERSIONS",
    "JudgeResult",
    "QemuBinary",
    "QemuError",
    "QemuNotFound",
    "QemuTimeout",
    "available",
    "find_qemu",
)


def __dir__() -> tuple[str, ...]:
    return __all__
