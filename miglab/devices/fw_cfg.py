"""The firmware configuration device (QEMU's ``hw/nvram/fw_cfg.c``, ``vmstate_fw_cfg``)."""

from __future__ import annotations

from dataclasses import dataclass

from miglab.devices.base import Device, visit_subsection
from miglab.visitors.base import (
    Visitor,
    visit_end_struct,
    visit_start_struct,
    visit_type_u16,
    visit_type_u32,
    visit_type_u64,
)

__all__ = ("FwCfg",)


@dataclass
class FwCfg(Device):
    """fw_cfg: the selected entry and the read position in it.

    ``dma_enabled`` and ``acpi_mr_restore`` are device properties, not
    state: they decide whether the ``fw_cfg/dma`` and ``fw_cfg/acpi_mr``
    subsections are sent (their ``needed`` functions), and loading a
    stream sets them from the subsections found.
    """

    VMSD_NAME = "fw_cfg"
    VERSION = 2
    MINIMUM_VERSION = 1

    cur_entry: int = 0
    cur_offset: int = 0
    dma_enabled: bool = False
    dma_addr: int = 0
    acpi_mr_restore: bool = False
    table_mr_size: int = 0
    linker_mr_size: int = 0
    rsdp_mr_size: int = 0

    def visit(self, v: Visitor) -> None:
        """Save or load ``vmstate_fw_cfg`` and its subsections."""
        visit_start_struct(v, self.VMSD_NAME)
        self.cur_entry = visit_type_u16(v, "cur_entry", self.cur_entry)
        if self.version_id == 1:  # VMSTATE_UINT16_HACK(cur_offset, ..., is_version_1)
            self.cur_offset = visit_type_u16(v, "cur_offset", self.cur_offset)
        else:  # VMSTATE_UINT32_V(cur_offset, FWCfgState, 2)
            self.cur_offset = visit_type_u32(v, "cur_offset", self.cur_offset)
        self.dma_enabled = visit_subsection(v, "fw_cfg/dma", 0, self.dma_enabled)
        if self.dma_enabled:
            self.dma_addr = visit_type_u64(v, "dma_addr", self.dma_addr)
            visit_end_struct(v)
        self.acpi_mr_restore = visit_subsection(v, "fw_cfg/acpi_mr", 1, self.acpi_mr_restore)
        if self.acpi_mr_restore:
            self.table_mr_size = visit_type_u64(v, "table_mr_size", self.table_mr_size)
            self.linker_mr_size = visit_type_u64(v, "linker_mr_size", self.linker_mr_size)
            self.rsdp_mr_size = visit_type_u64(v, "rsdp_mr_size", self.rsdp_mr_size)
            visit_end_struct(v)
        visit_end_struct(v)
