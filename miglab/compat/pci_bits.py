"""Read-only PCI config bits that devices set their own way per machine generation.

Some PCI config bits are not guest state but what the device model sets on reset, and
hw_compat properties change them between machine generations (``compat-qemu.json``
``pci.rules``, each with the QEMU source it mirrors).  A PCIe port's slot-status bits
further depend on whether the stream has a device behind it (``pci.slot_rules``: on q35
machines up to 6.0 native hotplug sets them, later ACPI hotplug owns the slot).  These
transforms find each capability by walking the config space's (extended) capability list,
as ``pci_find_capability`` does, and set or clear the bits; a guest may have read them, so
every change is guest-visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from miglab.compat.edit import Edit
from miglab.compat.registry import MACHINE_PREFIX
from miglab.devices.pci import find_capability
from miglab.knowledge import compat_qemu
from miglab.knowledge.compat import PciBitRule
from miglab.stream.model import Section, Stream
from miglab.vmstate.state import VMState

__all__ = ("occupied_ports", "pci_bits_fn", "slot_bits_fn", "slot_devices")


def pci_bits_fn(dst: str) -> Any:
    """The ``pci`` rules: bits a machine generation's devices set, whatever the guest did."""
    rules = compat_qemu().pci.rules

    def run(edit: Edit) -> None:
        _set_bits(edit, rules, dst, lambda rule, config, cap: dst in rule.set_in)

    return run


def slot_bits_fn(dst: str, occupied: bool) -> Any:
    """The ``pci`` ``slot_rules`` for a port with (``occupied``) or without a device behind."""
    rules = compat_qemu().pci.slot_rules.rules

    def want(rule: PciBitRule, config: bytes, cap: int) -> bool:
        at, mask = rule.needs or (0, 0)
        needs = not mask or bool(config[cap + at] & mask)
        return occupied and needs and dst in rule.set_in

    def run(edit: Edit) -> None:
        _set_bits(edit, rules, dst, want)

    return run


def _set_bits(
    edit: Edit,
    rules: Sequence[PciBitRule],
    dst: str,
    want: Callable[[PciBitRule, bytes, int], bool],
) -> None:
    """Set (``want``) or clear each rule's bits in every PCI config space of the states."""
    for state in list(edit.states):
        for path, config in _pci_configs(state):
            new = bytearray(config)
            why = []
            for rule in rules:
                if rule.devices is not None and state.desc.name not in rule.devices:
                    continue
                cap = find_capability(config, rule.capability, extended=rule.extended)
                if cap is None or cap + rule.offset >= len(new):
                    continue
                at, mask = cap + rule.offset, rule.mask
                old = new[at]
                new[at] = (old | mask) if want(rule, config, cap) else (old & ~mask)
                if new[at] != old:
                    why.append(f"{rule.what} at 0x{at:x} ({rule.source})")
            if why:
                edit.set(
                    state.desc.name,
                    path,
                    bytes(new),
                    classification="guest-visible",
                    reason=f"read-only PCI config bits devices set their own way on "
                    f"{dst.removeprefix(MACHINE_PREFIX)} machine types "
                    f"(the guest may have read them): {'; '.join(why)}",
                )


@cache
def slot_devices() -> frozenset[str]:
    """The device types (PCIe ports) whose slot-status bits ``pci.slot_rules`` covers."""
    rules = compat_qemu().pci.slot_rules.rules
    return frozenset(d for rule in rules for d in rule.devices or ())


def occupied_ports(stream: Stream) -> set[str]:
    """Bus paths of the PCI bridges a stream has a device behind (its section's idstr is
    ``<bridge path>:<slot>.<fn>/<vmsd>``, pcibus_get_dev_path)."""
    out: set[str] = set()
    for rec in stream.records:
        if isinstance(rec, Section) and "/" in rec.name:
            path = rec.name.split("/", 1)[0]
            if path.count(":") >= 3:
                out.add(path.rsplit(":", 1)[0])
    return out


def _pci_configs(state: VMState, prefix: str = "") -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for f in state.desc.fields:
        value = state.fields.get(f.name)
        if f.info == "pci config" and isinstance(value, bytes | bytearray | memoryview):
            out.append((prefix + f.name, bytes(value)))
        elif isinstance(value, VMState):
            out += _pci_configs(value, f"{prefix}{f.name}/")
    return out
