"""Which device classes a pc/q35 machine type can have, for ``check-schemas --machine``.

A ``-dump-vmstate`` schema lists every device class of its build that has a vmsd, whatever
the machine: Xen's, Arm boards' sysbus devices, abstract bases (``pic-common``), classes
only other devices create.  It names the machine it was dumped for, but holds no bus, so
"can a pc-q35-7.2 have this class?" is not derivable from it.  The real builds answer it:
``scripts/harvest-machine-devices.py`` asked each (5.2, 7.2, 10.0, 11.1) once and stored
``knowledge/machine-devices.json``.  A class can be in a machine's stream when it is

* on the **board** of that machine type (``info qtree`` of ``-nodefaults -S``) under one
  of the default accelerator configurations (TCG, KVM, KVM with the split irqchip: the
  KVM board has ``kvm-i8259``, ``kvm-pit``, ``kvmclock`` where TCG's has ``isa-i8259``...);
* **pluggable**: a ``-device`` whose bus type the machine family offers, directly or
  through a device that brings the bus (a USB controller brings ``usb-bus``); a device
  whose realize says it cannot be on this machine ("cannot be handled by this machine",
  "No 'virtio-bus' bus found", "requires a Xen guest") is not, one that only lacks a
  property or backend (``drive``, ``chardev``) is.  A ``-device`` on a bus type the
  harvest never saw offered (``vmbus``: Hyper-V's, which needs a kernel this host lacks;
  ``SSI``) is kept: not shown possible, not shown impossible either;
* a **child** a possible device creates (``virtio-net-device`` in ``virtio-net-pci``,
  from ``qom-list-properties``' ``child<...>``, which needs no realize).

So what is left out is what QEMU itself says no pc/q35 of the build can have: classes
no board, ``-device`` or child makes (abstract bases such as ``pic-common``, other
boards' devices such as ``acpi-ged`` or ``sysbus-esp``, ``emmc``, which is no
``-device`` on x86), and devices whose realize refuses the machine.

A schema is recognised as one build's by its class names (a build's dumps differ only in
the machine).  A schema of another build is judged by the union of what the harvested
builds say per class name, and a class none of them knows is kept: this filter hides only
what the real builds show impossible.  Not covered: KVM's Xen emulation (``-accel
kvm,xen-version=...``, QEMU >= 8.0, adds ``xen-overlay``, ``xen-evtchn``, ``xen-gnttab``,
``xen-xenstore``), which this host's kernel does not offer, so it could not be harvested.

    >>> can = machine_devices("data/schema-10.0-pc-q35-10.0.json", "pc-q35-10.0")
    >>> can.build, "ICH9-LPC" in can, "ufs" in can, "xen-platform" in can
    ('10.0', True, True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from miglab.errors import CompatError
from miglab.knowledge import machine_harvest
from miglab.knowledge.hardware import BuildHarvest
from miglab.vmstate.schema import SchemaSource, load_schema

__all__ = ("MachineDevices", "has_machine_type", "machine_devices", "machine_family")

#: The machine's own class in a schema (its findings are about the machine type).
_MACHINE = "vmschkmachine"


@dataclass(frozen=True, slots=True)
class MachineDevices:
    """The device classes one machine type can have, as the harvest of real QEMU says.

    Attributes:
        machine: the machine type asked about (``"pc-q35-7.2"``).
        build: the QEMU build the schema was recognised as, or None when it is none of the
            harvested ones (then the union over them decides, per class name).
        board: classes the machine itself creates.
        pluggable: classes a user can add (``-device``) or a pluggable device creates.
        known: every class the deciding harvest knows; a class outside it is kept.
    """

    machine: str
    build: str | None
    board: frozenset[str]
    pluggable: frozenset[str]
    known: frozenset[str]

    def __contains__(self, cls: object) -> bool:
        """True when a machine of this type can have a device of class ``cls``."""
        return (
            cls == _MACHINE or cls in self.board or cls in self.pluggable or cls not in self.known
        )

    def excluded(self, classes: Iterable[str]) -> list[str]:
        """The classes of ``classes`` this machine type cannot have, sorted."""
        return sorted(c for c in set(classes) if c not in self)


def machine_family(machine: str) -> str:
    """``"q35"`` or ``"i440fx"`` for a pc machine type or alias.

    Raises:
        CompatError: not a pc/q35 machine type (the harvest covers only those).
    """
    if re.fullmatch(r"q35|pc-q35-\d+\.\d+(\.\d+)?", machine):
        return "q35"
    if re.fullmatch(r"pc|pc-(i440fx-)?\d+\.\d+(\.\d+)?", machine):
        return "i440fx"
    raise CompatError(
        f"no device list for machine type {machine!r}: the harvest covers pc-q35-*, "
        "pc-i440fx-* (and the aliases q35, pc)",
        path=machine,
    )


def has_machine_type(schema: SchemaSource, machine: str) -> bool:
    """False when the build that dumped ``schema`` is known and has no ``machine`` type.

    True for a schema of a build the harvest does not know (it cannot tell).

    Raises:
        CompatError: ``machine`` is not a pc/q35 type.
    """
    machine_family(machine)
    build = _build_of(frozenset(load_schema(schema).devices))
    if build is None:
        return True
    data = machine_harvest().builds[build]
    return data.aliases.get(machine, machine) in data.boards


def _build_of(classes: frozenset[str]) -> str | None:
    """The harvested build whose ``-dump-vmstate`` has exactly these classes."""
    builds = machine_harvest().builds
    return next((v for v, b in builds.items() if frozenset(b.schema_classes) == classes), None)


def machine_devices(schema: SchemaSource, machine: str) -> MachineDevices:
    """The classes a ``machine`` of the build that dumped ``schema`` can have.

    Raises:
        CompatError: ``machine`` is not a pc/q35 type, or the schema's build (recognised
            by its classes) has no such machine type.
        DescriptionError: the schema is malformed.
    """
    classes = frozenset(load_schema(schema).devices)
    family = machine_family(machine)
    builds = machine_harvest().builds
    build = _build_of(classes)
    if build is not None:
        board, pluggable = _build_devices(build, builds[build], machine, family, strict=True)
        return MachineDevices(machine, build, board, pluggable, classes)
    on_board: set[str] = set()
    plugged: set[str] = set()
    known: set[str] = set()
    for version, data in builds.items():
        b, p = _build_devices(version, data, machine, family, strict=False)
        on_board |= b
        plugged |= p
        known |= set(data.schema_classes)
    return MachineDevices(machine, None, frozenset(on_board), frozenset(plugged), frozenset(known))


def _build_devices(
    version: str, data: BuildHarvest, machine: str, family: str, *, strict: bool
) -> tuple[frozenset[str], frozenset[str]]:
    """(board, pluggable) of ``machine`` in one build's harvest.

    A build without that machine type contributes its whole family's boards when not
    ``strict`` (another build's schema asks about it), and is an error when ``strict``.
    """
    configs = [c for c, spec in machine_harvest().configs.items() if spec.default]
    name = data.aliases.get(machine, machine)
    if name in data.boards:
        machines = [name]
    elif strict:
        raise CompatError(
            f"QEMU {version} (the build this schema is from) has no machine type {machine!r}",
            path=machine,
        )
    else:
        machines = [m for m in data.boards if machine_family(m) == family]
    board = {
        cls
        for m in machines
        for config, index in data.boards[m].items()
        if config in configs
        for cls in data.board_sets[index]
    }
    plug = data.pluggable[family]
    pluggable = frozenset(plug.devices) | frozenset(plug.children)
    return frozenset(board), pluggable | frozenset(plug.unreachable)
