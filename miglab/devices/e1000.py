"""The Intel 82540EM NIC (QEMU's ``hw/net/e1000.c``, ``vmstate_e1000``).

The MAC registers live in one array ``mac_reg`` indexed by register
offset / 4, as in QEMU; the description sends a chosen few by name
(``mac_reg[CTRL]``), three sub-arrays (RA, MTA, VFTA) and, when the
``e1000/full_mac_state`` subsection is sent, the whole array.  Register
offsets are data: ``miglab/knowledge/e1000-registers.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from miglab.devices.base import Device, visit_subsection
from miglab.devices.pci import PCIDevice
from miglab.knowledge import e1000_registers
from miglab.visitors.base import (
    Visitor,
    visit_end_struct,
    visit_start_struct,
    visit_type_bool,
    visit_type_buffer,
    visit_type_i8,
    visit_type_int_array,
    visit_type_u8,
    visit_type_u16,
    visit_type_u32,
)

__all__ = ("E1000", "REGISTERS", "EecdState", "TxProps", "TxState")

REGISTERS: dict[str, int] = {k: off >> 2 for k, off in e1000_registers().registers.items()}
MAC_REG_COUNT: int = e1000_registers().mac_reg_count

# The registers vmstate_e1000 sends one by one, in wire order.
_SAVED = (
    "CTRL", "EECD", "EERD", "GPRC", "GPTC", "ICR", "ICS", "IMC", "IMS", "LEDCTL",
    "MANC", "MDIC", "MPC", "PBA", "RCTL", "RDBAH", "RDBAL", "RDH", "RDLEN", "RDT",
    "STATUS", "SWSM", "TCTL", "TDBAH", "TDBAL", "TDH", "TDLEN", "TDT", "TORH", "TORL",
    "TOTH", "TOTL", "TPR", "TPT", "TXDCTL", "WUFC", "VET",
)  # fmt: skip
_SUB_ARRAYS = (("RA", 32), ("MTA", 128), ("VFTA", 128))  # VMSTATE_UINT32_SUB_ARRAY
_MIT = ("RDTR", "RADV", "TADV", "ITR")  # e1000/mit_state

_Visit = Callable[[Visitor, str | None, Any], int]


@dataclass
class EecdState:
    """The EEPROM's serial interface state (``eecd_state``)."""

    val_in: int = 0
    bitnum_in: int = 0
    bitnum_out: int = 0
    reading: int = 0
    old_eecd: int = 0


@dataclass
class TxProps:
    """Offload properties of a transmit context (``struct e1000_tx_props``)."""

    ipcss: int = 0
    ipcso: int = 0
    ipcse: int = 0
    tucss: int = 0
    tucso: int = 0
    tucse: int = 0
    paylen: int = 0
    hdr_len: int = 0
    mss: int = 0
    ip: int = 0
    tcp: int = 0

    _LAYOUT: ClassVar[tuple[tuple[str, _Visit], ...]] = (
        ("ipcss", visit_type_u8),
        ("ipcso", visit_type_u8),
        ("ipcse", visit_type_u16),
        ("tucss", visit_type_u8),
        ("tucso", visit_type_u8),
        ("tucse", visit_type_u16),
        ("paylen", visit_type_u32),
        ("hdr_len", visit_type_u8),
        ("mss", visit_type_u16),
    )

    def visit_offsets(self, v: Visitor, prefix: str) -> None:
        """Visit the nine checksum/segmentation members (``ipcss`` .. ``mss``)."""
        for attr, fn in self._LAYOUT:
            setattr(self, attr, fn(v, prefix + attr, getattr(self, attr)))

    def visit_flags(self, v: Visitor, prefix: str) -> None:
        """Visit ``ip`` and ``tcp`` (int8), sent apart from the rest."""
        self.ip = visit_type_i8(v, prefix + "ip", self.ip)
        self.tcp = visit_type_i8(v, prefix + "tcp", self.tcp)


@dataclass
class TxState:
    """The transmit path (``struct e1000_tx``): the packet being assembled."""

    size: int = 0
    tso_frames: int = 0
    sum_needed: int = 0
    header: bytes = bytes(256)
    data: bytes = bytes(0x10000)
    tso_props: TxProps = field(default_factory=TxProps)


@dataclass
class E1000(Device):
    """e1000 state.  ``mitigation``, ``full_mac`` and ``tso`` are the compat
    flags (``E1000_FLAG_*``) that decide which subsections are sent; loading
    sets them from the subsections found.
    """

    VMSD_NAME = "e1000"
    VERSION = 2
    MINIMUM_VERSION = 1

    parent_obj: PCIDevice = field(default_factory=PCIDevice)
    unused: bytes = bytes(4)  # VMSTATE_UNUSED(4): was mmio_base
    unused_v1: bytes = bytes(4)  # VMSTATE_UNUSED_TEST(is_version_1, 4): was instance id
    rxbuf_size: int = 0
    rxbuf_min_shift: int = 0
    eecd_state: EecdState = field(default_factory=EecdState)
    mig_props: TxProps = field(default_factory=TxProps)
    tx: TxState = field(default_factory=TxState)
    eeprom_data: list[int] = field(default_factory=lambda: [0] * 64)
    phy_reg: list[int] = field(default_factory=lambda: [0] * 0x20)
    mac_reg: list[int] = field(default_factory=lambda: [0] * MAC_REG_COUNT)
    mit_irq_level: bool = False
    mitigation: bool = False
    full_mac: bool = False
    tso: bool = False

    def visit(self, v: Visitor) -> None:
        """Save or load ``vmstate_e1000`` and its three subsections."""
        visit_start_struct(v, self.VMSD_NAME)
        self.parent_obj.visit(v, "parent_obj")
        if self.version_id == 1:
            self.unused_v1 = visit_type_buffer(v, "unused_v1", self.unused_v1, 4)
        self.unused = visit_type_buffer(v, "unused", self.unused, 4)
        self.rxbuf_size = visit_type_u32(v, "rxbuf_size", self.rxbuf_size)
        self.rxbuf_min_shift = visit_type_u32(v, "rxbuf_min_shift", self.rxbuf_min_shift)
        e = self.eecd_state
        e.val_in = visit_type_u32(v, "eecd_state.val_in", e.val_in)
        e.bitnum_in = visit_type_u16(v, "eecd_state.bitnum_in", e.bitnum_in)
        e.bitnum_out = visit_type_u16(v, "eecd_state.bitnum_out", e.bitnum_out)
        e.reading = visit_type_u16(v, "eecd_state.reading", e.reading)
        e.old_eecd = visit_type_u32(v, "eecd_state.old_eecd", e.old_eecd)
        self.mig_props.visit_offsets(v, "mig_props.")
        tx = self.tx
        tx.size = visit_type_u16(v, "tx.size", tx.size)
        tx.tso_frames = visit_type_u16(v, "tx.tso_frames", tx.tso_frames)
        tx.sum_needed = visit_type_u8(v, "tx.sum_needed", tx.sum_needed)
        self.mig_props.visit_flags(v, "mig_props.")
        tx.header = visit_type_buffer(v, "tx.header", tx.header, 256)
        tx.data = visit_type_buffer(v, "tx.data", tx.data, 0x10000)
        self.eeprom_data = visit_type_int_array(v, "eeprom_data", self.eeprom_data, 64, 2)
        self.phy_reg = visit_type_int_array(v, "phy_reg", self.phy_reg, 0x20, 2)
        self._visit_registers(v, _SAVED)
        for name, count in _SUB_ARRAYS:
            at = REGISTERS[name]
            self.mac_reg[at : at + count] = visit_type_int_array(
                v, f"mac_reg[{name}]", self.mac_reg[at : at + count], count, 4
            )
        self._visit_subsections(v)
        visit_end_struct(v)

    def _visit_registers(self, v: Visitor, names: tuple[str, ...]) -> None:
        for name in names:
            i = REGISTERS[name]
            self.mac_reg[i] = visit_type_u32(v, f"mac_reg[{name}]", self.mac_reg[i])

    def _visit_subsections(self, v: Visitor) -> None:
        self.mitigation = visit_subsection(v, "e1000/mit_state", 1, self.mitigation)
        if self.mitigation:
            self._visit_registers(v, _MIT)
            self.mit_irq_level = visit_type_bool(v, "mit_irq_level", self.mit_irq_level)
            visit_end_struct(v)
        self.full_mac = visit_subsection(v, "e1000/full_mac_state", 1, self.full_mac)
        if self.full_mac:
            self.mac_reg = visit_type_int_array(v, "mac_reg", self.mac_reg, MAC_REG_COUNT, 4)
            visit_end_struct(v)
        self.tso = visit_subsection(v, "e1000/tx_tso_state", 1, self.tso)
        if self.tso:
            tp = self.tx.tso_props
            tp.visit_offsets(v, "tx.tso_props.")
            tp.visit_flags(v, "tx.tso_props.")
            visit_end_struct(v)
