"""The 16550A UART (QEMU's ``hw/char/serial.c``): ``vmstate_serial`` and isa-serial.

:class:`SerialState` is the UART itself, described once and embedded by
the devices that carry one: :class:`ISASerial` (section ``serial``,
``VMSTATE_STRUCT(state, ISASerialState, 0, vmstate_serial, SerialState)``)
and :class:`PCISerial` (``pci-serial``).  An embedded struct is visited at
its own description's version (3), whatever the section's version.
The legacy ``qemu_put_be*`` handler it was converted from, and each step of
that conversion, are in :mod:`miglab.devices.serial_legacy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from miglab.devices.base import Device, visit_subsection
from miglab.devices.pci import PCIDevice
from miglab.visitors.base import (
    Visitor,
    visit_end_struct,
    visit_start_struct,
    visit_type_buffer,
    visit_type_i32,
    visit_type_i64,
    visit_type_u8,
    visit_type_u16,
    visit_type_u32,
)

__all__ = ("SERIAL_VERSION", "Fifo8", "ISASerial", "PCISerial", "SerialState")

SERIAL_VERSION = 3  # vmstate_serial.version_id
UART_FIFO_LENGTH = 16
UART_IER_THRI = 0x02  # transmitter holding register empty interrupt enabled
UART_IIR_ID = 0x06  # mask of the interrupt id bits
UART_IIR_THRI = 0x02  # interrupt id: transmitter holding register empty
TIMER_NOT_ARMED = -1


@dataclass
class Fifo8:
    """QEMU's ``Fifo8`` (``vmstate_fifo8``): a ring of ``capacity`` bytes.

    ``capacity`` is not on the wire: the owner fixes it (16 for a UART).
    """

    data: bytes = bytes(UART_FIFO_LENGTH)
    head: int = 0
    num: int = 0

    def visit(self, v: Visitor, name: str, capacity: int = UART_FIFO_LENGTH) -> None:
        """Save or load the FIFO as struct member ``name``."""
        visit_start_struct(v, name)
        self.data = visit_type_buffer(v, "data", self.data, capacity)
        self.head = visit_type_u32(v, "head", self.head)
        self.num = visit_type_u32(v, "num", self.num)
        visit_end_struct(v)


@dataclass
class SerialState:
    """The UART registers and the optional state its subsections carry.

    Timers are expiry times in ns (``-1`` = not armed).  ``thr_ipending``
    and ``poll_msl`` take QEMU's post-load values when their subsections
    are absent, so a loaded state saves back to the same bytes.
    """

    divider: int = 0
    rbr: int = 0
    ier: int = 0
    iir: int = 0
    lcr: int = 0
    mcr: int = 0
    lsr: int = 0
    msr: int = 0
    scr: int = 0
    fcr_vmstate: int = 0
    thr_ipending: int = 0
    tsr_retry: int = 0
    thr: int = 0
    tsr: int = 0
    recv_fifo: Fifo8 = field(default_factory=Fifo8)
    xmit_fifo: Fifo8 = field(default_factory=Fifo8)
    fifo_timeout_timer: int = TIMER_NOT_ARMED
    timeout_ipending: int = 0
    poll_msl: int = -1
    modem_status_poll: int = TIMER_NOT_ARMED

    def thr_ipending_expected(self) -> int:
        """What ``thr_ipending`` follows from IIR (serial_post_load's default)."""
        return int((self.iir & UART_IIR_ID) == UART_IIR_THRI)

    def thr_ipending_needed(self) -> bool:
        """``serial_thr_ipending_needed``: only when it differs from IIR's."""
        return bool(self.ier & UART_IER_THRI) and self.thr_ipending != self.thr_ipending_expected()

    def visit(self, v: Visitor, name: str | None, version_id: int = SERIAL_VERSION) -> None:
        """Save or load ``vmstate_serial`` as struct member ``name``."""
        visit_start_struct(v, name)
        self.visit_registers(v, version_id)
        self.visit_subsections(v)
        visit_end_struct(v)

    def visit_registers(self, v: Visitor, version_id: int) -> None:
        """The fields of ``vmstate_serial`` (what the legacy handler wrote)."""
        self.divider = visit_type_u16(v, "divider", self.divider)
        self.rbr = visit_type_u8(v, "rbr", self.rbr)
        self.ier = visit_type_u8(v, "ier", self.ier)
        self.iir = visit_type_u8(v, "iir", self.iir)
        self.lcr = visit_type_u8(v, "lcr", self.lcr)
        self.mcr = visit_type_u8(v, "mcr", self.mcr)
        self.lsr = visit_type_u8(v, "lsr", self.lsr)
        self.msr = visit_type_u8(v, "msr", self.msr)
        self.scr = visit_type_u8(v, "scr", self.scr)
        if version_id >= 3:
            self.fcr_vmstate = visit_type_u8(v, "fcr_vmstate", self.fcr_vmstate)

    def visit_subsections(self, v: Visitor) -> None:
        """The seven subsections of ``vmstate_serial``, each sent only when needed."""
        if visit_subsection(v, "serial/thr_ipending", 1, self.thr_ipending_needed()):
            self.thr_ipending = visit_type_i32(v, "thr_ipending", self.thr_ipending)
            visit_end_struct(v)
        elif v.is_input:
            self.thr_ipending = self.thr_ipending_expected()
        if visit_subsection(v, "serial/tsr", 1, self.tsr_retry != 0):
            self.tsr_retry = visit_type_u32(v, "tsr_retry", self.tsr_retry)
            self.thr = visit_type_u8(v, "thr", self.thr)
            self.tsr = visit_type_u8(v, "tsr", self.tsr)
            visit_end_struct(v)
        if visit_subsection(v, "serial/recv_fifo", 1, self.recv_fifo.num != 0):
            self.recv_fifo.visit(v, "recv_fifo")
            visit_end_struct(v)
        if visit_subsection(v, "serial/xmit_fifo", 1, self.xmit_fifo.num != 0):
            self.xmit_fifo.visit(v, "xmit_fifo")
            visit_end_struct(v)
        if visit_subsection(
            v, "serial/fifo_timeout_timer", 1, self.fifo_timeout_timer != TIMER_NOT_ARMED
        ):
            self.fifo_timeout_timer = visit_type_i64(
                v, "fifo_timeout_timer", self.fifo_timeout_timer
            )
            visit_end_struct(v)
        if visit_subsection(v, "serial/timeout_ipending", 1, self.timeout_ipending != 0):
            self.timeout_ipending = visit_type_i32(v, "timeout_ipending", self.timeout_ipending)
            visit_end_struct(v)
        if visit_subsection(v, "serial/poll", 1, self.poll_msl >= 0):
            self.poll_msl = visit_type_i32(v, "poll_msl", self.poll_msl)
            self.modem_status_poll = visit_type_i64(v, "modem_status_poll", self.modem_status_poll)
            visit_end_struct(v)
        elif v.is_input:
            self.poll_msl = -1  # serial_pre_load


@dataclass
class ISASerial(Device):
    """isa-serial: a UART on the ISA bus (section ``serial``)."""

    VMSD_NAME = "serial"
    VERSION = 3
    MINIMUM_VERSION = 2

    state: SerialState = field(default_factory=SerialState)

    def visit(self, v: Visitor) -> None:
        """Save or load ``vmstate_isa_serial``: just the embedded UART."""
        visit_start_struct(v, self.VMSD_NAME)
        self.state.visit(v, "state")
        visit_end_struct(v)


@dataclass
class PCISerial(Device):
    """pci-serial: a UART behind a PCI function (``vmstate_pci_serial``)."""

    VMSD_NAME = "pci-serial"
    VERSION = 1
    MINIMUM_VERSION = 1

    dev: PCIDevice = field(default_factory=PCIDevice)
    state: SerialState = field(default_factory=SerialState)

    def visit(self, v: Visitor) -> None:
        """Save or load the PCI header, then the embedded UART."""
        visit_start_struct(v, self.VMSD_NAME)
        self.dev.visit(v, "dev")
        self.state.visit(v, "state")
        visit_end_struct(v)
