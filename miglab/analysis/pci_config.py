"""Names for the bytes of a PCI config space: register, capability, bit.

A device's config space travels as one opaque buffer (``VMSTATE_PCI_DEVICE``'s
``config``, 256 bytes, 4096 for PCI Express), so a raw diff says "byte 0x10a
changed".  :func:`register_map` walks the space the way a guest's PCI code
does -- the header of its type, then the capability list from
``PCI_CAPABILITY_LIST`` (0x34), then the extended capabilities from 0x100, both
walked by :mod:`miglab.devices.pci` -- and names every register it finds; :func:`bit_changes` names the bits two
values of one register differ in.  The layouts and names are data, in
``miglab/knowledge/pci-config.json`` (named as in Linux's ``pci_regs.h``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from miglab.devices.pci import PCI_CONFIG_SIZE, capability_list, extended_capability_list
from miglab.knowledge import pci_config
from miglab.knowledge.hardware import PciCapability, PciRegisterRow

__all__ = ("Register", "bit_changes", "register_map")


@dataclass(frozen=True, slots=True)
class Register:
    """One register of a config space.

    Attributes:
        name: the ``pci_regs.h`` suffix (``STATUS``, ``EXP_DEVCAP``), with the
            capability and its offset in front for capability registers
            (``EXP@0x80 EXP_DEVCAP``).
        offset: its first byte in the config space.
        size: its width in bytes (little-endian, as PCI is).
        bits: the name of its bit table in the knowledge file, if any.
    """

    name: str
    offset: int
    size: int
    bits: str | None = None


def _registers(
    rows: Sequence[PciRegisterRow], base: int, prefix: str, tables: Mapping[str, object]
) -> list[Register]:
    out = []
    for row in rows:
        table = row.bits if row.bits is not None else (row.name if row.name in tables else None)
        out.append(Register(prefix + row.name, base + row.offset, row.size, table))
    return out


def register_map(config: bytes) -> list[Register]:
    """Every register the header and the capability lists of ``config`` name, by offset.

    A capability whose registers the knowledge file does not list is named by
    its header only (``CAP VNDR@0x40``); a loop or an out-of-range pointer in
    a list ends that list.
    """
    k = pci_config()
    tables = k.bits
    own = k.header.type1 if len(config) > 0x0E and config[0x0E] & 0x7F == 1 else k.header.type0
    regs = _registers(k.header.common, 0, "", tables) + _registers(own, 0, "", tables)
    for cap_id, ptr in capability_list(config):
        cap = k.capabilities.get(cap_id, PciCapability(name=f"0x{cap_id:02x}"))
        prefix = f"{cap.name}@0x{ptr:02x} "
        regs.append(Register(f"{prefix}CAP header (id, next)", ptr, 2))
        # A short (version 1) capability ends early: no register runs past 0xff.
        listed = _registers(cap.registers, ptr, prefix, tables)
        regs += [r for r in listed if r.offset + r.size <= PCI_CONFIG_SIZE]
    for cap_id, ptr in extended_capability_list(config):
        cap = k.extended_capabilities.get(cap_id, PciCapability(name=f"0x{cap_id:04x}"))
        prefix = f"{cap.name}@0x{ptr:03x} "
        regs.append(Register(f"{prefix}EXT_CAP header (id, version, next)", ptr, 4))
        regs += _registers(cap.registers, ptr, prefix, tables)
    return sorted(regs, key=lambda r: r.offset)


def _fields(table: str) -> list[tuple[int, int, str]]:
    """(low bit, high bit, name) of a bit table."""
    out = []
    for key, name in pci_config().bits[table].items():
        lo, _, hi = key.partition("-")
        out.append((int(lo), int(hi or lo), name))
    return sorted(out)


def bit_changes(register: Register, before: int, after: int) -> list[str]:
    """Each named bit (or bit field) the two values differ in, then the unnamed bits.

    >>> r = Register("EXP@0x80 EXP_DEVCAP", 0x84, 4, "EXP_DEVCAP")
    >>> bit_changes(r, 0x8000, 0x8020)
    ['bit 5 EXT_TAG 0->1']
    """
    flipped = before ^ after
    out = []
    named = 0
    for lo, hi, name in _fields(register.bits) if register.bits else ():
        mask = ((1 << (hi - lo + 1)) - 1) << lo
        named |= mask
        if flipped & mask:
            where = f"bit {lo}" if lo == hi else f"bits {lo}-{hi}"
            out.append(f"{where} {name} {(before & mask) >> lo}->{(after & mask) >> lo}")
    for bit in range(register.size * 8 if register.size <= 4 else 0):  # not a header log
        if flipped >> bit & 1 and not named >> bit & 1:
            out.append(f"bit {bit} {before >> bit & 1}->{after >> bit & 1}")
    return out
