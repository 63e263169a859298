"""The hardware knowledge files as typed records: e1000 registers, PCI config, machine devices.

* ``e1000-registers.json`` (:class:`E1000Registers`): byte offsets of the registers
  ``vmstate_e1000`` names (read by :mod:`miglab.devices.e1000`);
* ``pci-config.json`` (:class:`PciConfig`): the config-space header, capability registers
  and bit names of Linux's ``pci_regs.h`` (read by :mod:`miglab.analysis.pci_config`);
* ``machine-devices.json`` (:class:`MachineHarvest`): which device classes pc/q35 machines
  of each build can have, harvested from the real builds by
  ``scripts/harvest-machine-devices.py`` (read by :mod:`miglab.compat.machine_devices`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from miglab.knowledge._load import Record, check_refs

__all__ = (
    "AccelConfig",
    "BuildHarvest",
    "E1000Registers",
    "MachineHarvest",
    "PciCapability",
    "PciConfig",
    "PciHeader",
    "PciRegisterRow",
    "Pluggable",
)

_Offset = Annotated[int, msgspec.Meta(ge=0)]


# --- e1000-registers.json ----------------------------------------------------------------------
class E1000Registers(Record, frozen=True):
    """``e1000-registers.json``: register name -> byte offset (``mac_reg[]`` is indexed by
    offset >> 2)."""

    source: str
    registers: dict[str, _Offset]
    mac_reg_count: Annotated[int, msgspec.Meta(gt=0)]

    def __post_init__(self) -> None:
        check_refs(
            "register {} is past mac_reg",
            range(self.mac_reg_count),
            ((name, offset >> 2) for name, offset in self.registers.items()),
        )


# --- pci-config.json ---------------------------------------------------------------------------
class PciRegisterRow(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """``[name, offset, size]`` or ``[name, offset, size, bit table]``; without a table
    named, a register's bit table is the one of its own name, if any."""

    name: str
    offset: _Offset
    size: Annotated[int, msgspec.Meta(ge=1)]
    bits: str | None = None


class PciHeader(Record, frozen=True):
    common: tuple[PciRegisterRow, ...]
    type0: tuple[PciRegisterRow, ...]
    type1: tuple[PciRegisterRow, ...]


class PciCapability(Record, frozen=True):
    name: str
    registers: tuple[PciRegisterRow, ...] = ()  # offsets from the capability's start


#: A bit (``"5"``) or bit field (``"0-2"``) of a register.
_Bits = Annotated[str, msgspec.Meta(pattern=r"^\d+(-\d+)?$")]


class PciConfig(Record, frozen=True):
    """``pci-config.json``."""

    source: str
    header: PciHeader
    bits: dict[str, dict[_Bits, str]]  # bit table -> bit(s) -> name
    capabilities: dict[int, PciCapability]  # capability id -> its registers
    extended_capabilities: dict[int, PciCapability]

    def __post_init__(self) -> None:
        caps = [*self.capabilities.values(), *self.extended_capabilities.values()]
        header = self.header
        check_refs(
            "register {} names bit table {!r}, which 'bits' does not have",
            self.bits,
            (
                (row.name, row.bits)
                for rows in (
                    header.common,
                    header.type0,
                    header.type1,
                    *(c.registers for c in caps),
                )
                for row in rows
                if row.bits is not None
            ),
        )


# --- machine-devices.json ----------------------------------------------------------------------
class AccelConfig(Record, frozen=True):
    """A harvest setup: QEMU arguments, and whether a board under it counts by default."""

    args: tuple[str, ...]
    default: bool


class Pluggable(Record, frozen=True):
    """What ``-device`` can add to one machine family of a build."""

    machine: str  # the machine type asked
    devices: tuple[str, ...]  # realizable there
    children: tuple[str, ...]  # created by a possible device
    unreachable: tuple[str, ...]  # on a bus type the harvest never saw offered: kept
    buses: dict[str, tuple[str, ...]]  # bus type -> what offers it
    impossible: dict[str, str]  # class -> the realize refusal
    needs_properties: dict[str, str]  # class -> what its realize lacked


class BuildHarvest(Record, frozen=True):
    """One build's harvest."""

    schema_classes: tuple[str, ...]  # the classes of its -dump-vmstate
    aliases: dict[str, str]  # "pc" -> "pc-i440fx-10.0"
    board_sets: tuple[tuple[str, ...], ...]  # distinct sets of board classes
    boards: dict[str, dict[str, _Offset]]  # machine type -> config -> index in board_sets
    board_errors: dict[str, str]  # "machine config" -> why QEMU would not start
    pluggable: dict[str, Pluggable]  # family ("i440fx", "q35") -> what plugs in

    def __post_init__(self) -> None:
        check_refs(
            "boards[{!r}][{!r}] is {}, past board_sets",
            range(len(self.board_sets)),
            (
                (machine, config, index)
                for machine, sets in self.boards.items()
                for config, index in sets.items()
            ),
        )


class MachineHarvest(Record, frozen=True):
    """``machine-devices.json``."""

    made_by: str
    configs: dict[str, AccelConfig]
    builds: dict[str, BuildHarvest]

    def __post_init__(self) -> None:
        check_refs(
            "builds[{!r}].boards[{!r}] names config {!r}, which 'configs' lacks",
            self.configs,
            (
                (version, machine, config)
                for version, build in self.builds.items()
                for machine, sets in build.boards.items()
                for config in sets
            ),
        )
