"""The destination options a live conversion asks for, checked against the running QEMUs.

A conversion may need the destination started with an option rather than a change of
state: ``-global DEV.vectors=N`` keeps a virtio device's MSI-X vector count where the
destination's machine type gives it another
(:func:`~miglab.compat.virtio_rules.vectors_option`).  ``miglab migrate`` knows the
running source before the stream exists, so it reads each such device's ``vectors`` with
``qom-get`` on both QEMUs and refuses a destination started without the option, before it
sets anything on either (the destination would load a device other than the guest's).
"""

from __future__ import annotations

from typing import Any, Protocol

from miglab.compat.qemu import machine_generation
from miglab.compat.virtio_rules import vectors_option
from miglab.knowledge import compat_virtio

__all__ = ("missing_options",)


class Monitor(Protocol):
    """A QMP connection: ``cmd(name, args)`` returns the command's result."""

    def cmd(self, name: str, args: dict[str, Any] | None = None) -> Any: ...


def missing_options(
    src: Monitor, dst: Monitor, src_machine: str | None, dst_machine: str | None, dst_release: str
) -> list[str]:
    """What the destination lacks: one line per option, naming the device and both counts.

    Empty when both machine types are of one generation (nothing is asked for) or either is
    unknown (the proxy refuses those itself).  A device the destination lacks is left to
    QEMU, which refuses its section.
    """
    a, b = machine_generation(src_machine), machine_generation(dst_machine)
    if a is None or b is None or a == b:
        return []
    devices = {k.pci_device: name for name, k in compat_virtio().devices.items()}
    theirs = _devices(dst)
    missing = []
    for path, kind in _devices(src).items():
        device = devices.get(kind)
        if device is None or theirs.get(path) != kind:
            continue
        have = int(src.cmd("qom-get", {"path": path, "property": "vectors"}))
        option = vectors_option(device, have, b, dst_release)
        if option is None:
            continue
        got = int(dst.cmd("qom-get", {"path": path, "property": "vectors"}))
        if got != have:
            missing.append(
                f"{' '.join(option)} ({path}: the source's {kind} has {have} MSI-X "
                f"vectors, the destination's {got}, {dst_machine}'s default)"
            )
    return missing


def _devices(monitor: Monitor) -> dict[str, str]:
    """QOM path -> type of each device of the command line (``-device``, with or without id)."""
    out: dict[str, str] = {}
    for container in ("/machine/peripheral", "/machine/peripheral-anon"):
        for entry in monitor.cmd("qom-list", {"path": container}):
            kind = str(entry.get("type", ""))
            if kind.startswith("child<") and kind.endswith(">"):
                out[f"{container}/{entry['name']}"] = kind[len("child<") : -1]
    return out
