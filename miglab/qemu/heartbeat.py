"""Read what miglab's test guest says on its serial console: heartbeats, boots, oopses.

The guest built by ``scripts/build-guest.sh`` prints ``MIGLAB-BOOT <kernel>`` once per boot,
then, about twice a second::

    HB <counter> <uptime> <md5 of /dev/vda> taint=<n> eth0=ok eth1=fail

The counter lives in the init shell's memory, so it continues across a migration and restarts
at 1 on a reboot; the disk checksum is of a read that bypasses the page cache (``O_DIRECT``),
so it exercises the disk device each time; each NIC entry is a ping to that user-mode network's
gateway.  Kernel trouble reaches the same console (``console=ttyS0 loglevel=5``) and is
recognised by the lines Linux prints for it (:data:`TROUBLE_MARKERS`).

A console log may start or end in the middle of a line (the destination continues what the
source was writing); only whole heartbeat lines count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ("BOOT_MARKER", "TROUBLE_MARKERS", "Console", "Heartbeat", "parse_console")

#: First line /init prints on every boot.
BOOT_MARKER = "MIGLAB-BOOT"
#: Lines Linux prints when it oopses, hits a BUG, panics or locks up (kernel/panic.c,
#: arch/x86/kernel/dumpstack.c, kernel/watchdog.c).
TROUBLE_MARKERS = (
    "Kernel panic",
    "Oops:",
    "BUG:",
    "general protection fault",
    "invalid opcode:",
    "double fault:",
    "soft lockup",
    "hard LOCKUP",
    "Attempted to kill init",
)

_HEARTBEAT = re.compile(
    r"^HB (?P<counter>\d+) (?P<uptime>\d+\.\d+) (?P<disk>[0-9a-f]{32}) taint=(?P<taint>\d+)"
    r"(?P<nets>(?: [A-Za-z0-9_.-]+=(?:ok|fail))*)$"
)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One heartbeat line.

    Attributes:
        counter: increases by one per beat since boot.
        uptime: the guest's ``/proc/uptime`` in seconds.
        disk: md5 (hex) of the whole of ``/dev/vda`` as read with ``O_DIRECT``.
        taint: the kernel's taint mask (non-zero after an oops, a warning, a BUG).
        nets: interface name -> whether its gateway answered a ping.
    """

    counter: int
    uptime: float
    disk: str
    taint: int
    nets: Mapping[str, bool] = field(default_factory=dict)

    @property
    def net_ok(self) -> bool:
        """True iff every interface answered."""
        return all(self.nets.values())


@dataclass(frozen=True, slots=True)
class Console:
    """What one console log shows.

    Attributes:
        beats: whole heartbeat lines, in order.
        boots: how many times the guest (re)started /init.
        trouble: kernel lines matching :data:`TROUBLE_MARKERS`, in order.
    """

    beats: tuple[Heartbeat, ...]
    boots: int
    trouble: tuple[str, ...]

    @property
    def last(self) -> Heartbeat | None:
        """The newest heartbeat, if any."""
        return self.beats[-1] if self.beats else None


def _heartbeat(line: str) -> Heartbeat | None:
    match = _HEARTBEAT.match(line)
    if match is None:
        return None
    nets = dict(item.split("=") for item in match["nets"].split())
    return Heartbeat(
        int(match["counter"]),
        float(match["uptime"]),
        match["disk"],
        int(match["taint"]),
        {name: state == "ok" for name, state in nets.items()},
    )


def parse_console(text: str) -> Console:
    """Parse a serial console log (complete lines only; a trailing partial line is ignored).

    Example:
        >>> parse_console("MIGLAB-BOOT x\\nHB 1 7.41 " + "0" * 32 + " taint=0 eth0=ok\\n").last.counter
        1
    """
    lines = text.replace("\r", "").split("\n")[:-1]  # the part after the last newline is unfinished
    beats = []
    trouble = []
    boots = 0
    for line in lines:
        if line.startswith(BOOT_MARKER):
            boots += 1
        elif (beat := _heartbeat(line)) is not None:
            beats.append(beat)
        elif any(marker in line for marker in TROUBLE_MARKERS):
            trouble.append(line.strip())
    return Console(tuple(beats), boots, tuple(trouble))
