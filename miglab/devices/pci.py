"""The PCI device header every PCI model embeds (QEMU's ``vmstate_pci_device``), and the
one walk of a config space's capability lists.

Three readers need the capabilities of a config space: the virtio-pci format (MSI-X and
PCI Express decide its layout), the compat transforms of read-only config bits, and the
register names of a config diff.  They walk the lists here, with the constants of
``include/hw/pci/pci_regs.h`` declared once.  A config space comes from the stream, so the
walk trusts no pointer: it ends at a loop, and at a pointer outside the list's region.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from miglab.visitors.base import (
    Visitor,
    visit_end_struct,
    visit_start_struct,
    visit_type_buffer,
    visit_type_i32,
    visit_type_int_array,
)
from miglab.vmstate.description import describe
from miglab.vmstate.description import field as vmstate_field

__all__ = (
    "PCIE_CONFIG_SIZE",
    "PCI_CAPABILITY_LIST",
    "PCI_CAP_ID_EXP",
    "PCI_CAP_ID_MSIX",
    "PCI_CONFIG_HEADER_SIZE",
    "PCI_CONFIG_SIZE",
    "PCI_STATUS",
    "PCI_STATUS_CAP_LIST",
    "VMSTATE_PCI_DEVICE",
    "PCIDevice",
    "capability_list",
    "extended_capability_list",
    "find_capability",
)

PCI_CONFIG_SIZE = 256  # also where the extended capability list starts
PCIE_CONFIG_SIZE = 4096
PCI_CONFIG_HEADER_SIZE = 0x40  # capabilities live past the header
PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x10  # in the low byte of STATUS: the standard list is present
PCI_CAPABILITY_LIST = 0x34  # the byte that points at the first capability
PCI_CAP_ID_EXP = 0x10
PCI_CAP_ID_MSIX = 0x11
PCI_NUM_PINS = 4
PCI_DEVICE_VERSION = 2  # vmstate_pci_device.version_id


@dataclass
class PCIDevice:
    """Config space and INTx levels (``VMSTATE_PCI_DEVICE``).

    ``version_id`` is an ``int32 le`` check: the destination accepts it
    only if it is at most its own (see :func:`miglab.devices.state.check_state`).
    Config space is 256 bytes, 4096 for PCI Express (``express``), which is
    a property of the device, not on the wire.
    """

    version_id: int = PCI_DEVICE_VERSION
    config: bytes = bytes(PCI_CONFIG_SIZE)
    irq_state: list[int] = field(default_factory=lambda: [0] * PCI_NUM_PINS)
    express: bool = False

    def visit(self, v: Visitor, name: str) -> None:
        """Save or load the PCI header as struct member ``name``."""
        size = PCIE_CONFIG_SIZE if self.express else PCI_CONFIG_SIZE
        visit_start_struct(v, name)
        self.version_id = visit_type_i32(v, "version_id", self.version_id)
        self.config = visit_type_buffer(v, "config", self.config, size)
        # "pci irq state": PCI_NUM_PINS be32 levels (get/put_pci_irq_state).
        self.irq_state = visit_type_int_array(
            v, "irq_state", self.irq_state, PCI_NUM_PINS, 4, signed=True
        )
        visit_end_struct(v)


# vmstate_pci_device as a description: version_id is QEMU's "int32 le" check.
VMSTATE_PCI_DEVICE = describe(
    "PCIDevice",
    [
        vmstate_field("version_id", "int32 le"),
        vmstate_field("config", "pci config", size=PCI_CONFIG_SIZE),
        vmstate_field("irq_state", "int32", num=PCI_NUM_PINS, version_id=2),
    ],
    version_id=PCI_DEVICE_VERSION,
    minimum_version_id=1,
)


def capability_list(config: bytes) -> Iterator[tuple[int, int]]:
    """(id, offset) of each capability of the standard list, in list order.

    The list starts at the byte ``PCI_CAPABILITY_LIST`` points at, when ``STATUS`` says
    there is one (QEMU's ``pci_find_capability_list``).  It ends at a null pointer, at a
    pointer into the header or past the first 256 bytes or the config (as Linux's
    ``__pci_find_next_cap_ttl`` ends it below 0x40), or at an offset it has seen before.
    """
    if len(config) <= PCI_CAPABILITY_LIST or not config[PCI_STATUS] & PCI_STATUS_CAP_LIST:
        return
    end = min(len(config), PCI_CONFIG_SIZE)
    at, seen = config[PCI_CAPABILITY_LIST] & 0xFC, set()
    while PCI_CONFIG_HEADER_SIZE <= at <= end - 2 and at not in seen:
        seen.add(at)
        yield config[at], at
        at = config[at + 1] & 0xFC  # PCI_CAP_LIST_NEXT, dword aligned


def extended_capability_list(config: bytes) -> Iterator[tuple[int, int]]:
    """(id, offset) of each PCI Express extended capability, in list order.

    The list starts at 0x100 (``PCI_CONFIG_SPACE_SIZE``; a 256-byte space has none) and
    ends at a zero header, at a pointer below 0x100 or past the config, or at an offset
    it has seen before (QEMU's ``pcie_find_capability_list``).
    """
    at, seen = PCI_CONFIG_SIZE, set()
    while PCI_CONFIG_SIZE <= at <= len(config) - 4 and at not in seen:
        seen.add(at)
        header = int.from_bytes(config[at : at + 4], "little")
        if header == 0:
            return
        yield header & 0xFFFF, at
        at = (header >> 20) & 0xFFC  # PCI_EXT_CAP_NEXT, dword aligned


def find_capability(config: bytes, cap_id: int, *, extended: bool = False) -> int | None:
    """The offset of the first capability ``cap_id`` of the (``extended``) list, or None."""
    walk = extended_capability_list if extended else capability_list
    return next((at for found, at in walk(config) if found == cap_id), None)
