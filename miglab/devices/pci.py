"""The PCI device header every PCI model embeds (QEMU's ``vmstate_pci_device``)."""

from __future__ import annotations

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

__all__ = ("PCIE_CONFIG_SIZE", "PCI_CONFIG_SIZE", "VMSTATE_PCI_DEVICE", "PCIDevice")

PCI_CONFIG_SIZE = 256
PCIE_CONFIG_SIZE = 4096
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
