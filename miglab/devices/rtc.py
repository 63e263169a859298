"""The MC146818 real-time clock (QEMU's ``hw/rtc/mc146818rtc.c``, ``vmstate_rtc``)."""

from __future__ import annotations

from dataclasses import dataclass

from miglab.devices.base import Device, visit_subsection
from miglab.visitors.base import (
    Visitor,
    visit_end_struct,
    visit_start_struct,
    visit_type_buffer,
    visit_type_i64,
    visit_type_u8,
    visit_type_u16,
    visit_type_u32,
    visit_type_u64,
)
from miglab.vmstate.description import describe, field

__all__ = ("MC146818RTC", "VMSTATE_RTC")

CMOS_SIZE = 128
TIMER_NOT_ARMED = -1  # a QEMUTimer on the wire: its expiry in ns, -1 when not armed


@dataclass
class MC146818RTC(Device):
    """The CMOS clock: 128 bytes of CMOS and the timers that tick it.

    Timers are their expiry time in ns (``-1`` = not armed), as QEMU sends them.
    ``unused0``/``unused1`` are the ``VMSTATE_UNUSED`` spans (28 and 24 bytes)
    of fields QEMU dropped; kept so any bytes found there are written back.
    """

    VMSD_NAME = "mc146818rtc"
    VERSION = 3
    MINIMUM_VERSION = 1

    cmos_data: bytes = bytes(CMOS_SIZE)
    cmos_index: int = 0
    unused0: bytes = bytes(7 * 4)
    periodic_timer: int = TIMER_NOT_ARMED
    next_periodic_time: int = 0
    unused1: bytes = bytes(3 * 8)
    irq_coalesced: int = 0
    period: int = 0
    base_rtc: int = 0
    last_update: int = 0
    offset: int = 0
    update_timer: int = TIMER_NOT_ARMED
    next_alarm_time: int = 0
    irq_reinject_on_ack_count: int = 0

    def visit(self, v: Visitor) -> None:
        """Save or load ``vmstate_rtc``."""
        ver = self.version_id
        visit_start_struct(v, self.VMSD_NAME)
        self.cmos_data = visit_type_buffer(v, "cmos_data", self.cmos_data, CMOS_SIZE)
        self.cmos_index = visit_type_u8(v, "cmos_index", self.cmos_index)
        self.unused0 = visit_type_buffer(v, "unused0", self.unused0, 7 * 4)
        self.periodic_timer = visit_type_i64(v, "periodic_timer", self.periodic_timer)
        self.next_periodic_time = visit_type_i64(v, "next_periodic_time", self.next_periodic_time)
        self.unused1 = visit_type_buffer(v, "unused1", self.unused1, 3 * 8)
        if ver >= 2:
            self.irq_coalesced = visit_type_u32(v, "irq_coalesced", self.irq_coalesced)
            self.period = visit_type_u32(v, "period", self.period)
        if ver >= 3:
            self.base_rtc = visit_type_u64(v, "base_rtc", self.base_rtc)
            self.last_update = visit_type_u64(v, "last_update", self.last_update)
            self.offset = visit_type_i64(v, "offset", self.offset)
            self.update_timer = visit_type_i64(v, "update_timer", self.update_timer)
            self.next_alarm_time = visit_type_u64(v, "next_alarm_time", self.next_alarm_time)
        # rtc_irq_reinject_on_ack_count_needed()
        name = "mc146818rtc/irq_reinject_on_ack_count"
        if visit_subsection(v, name, 1, self.irq_reinject_on_ack_count != 0):
            self.irq_reinject_on_ack_count = visit_type_u16(
                v, "irq_reinject_on_ack_count", self.irq_reinject_on_ack_count
            )
            visit_end_struct(v)
        visit_end_struct(v)


# The same layout as a declarative description (QEMU's vmstate_rtc), for the
# description-driven path: miglab.devices.state.state_from_values + visit_vmstate.
VMSTATE_RTC = describe(
    "mc146818rtc",
    [
        field("cmos_data", "buffer", size=CMOS_SIZE),
        field("cmos_index", "uint8"),
        field("unused0", "unused_buffer", size=7 * 4),
        field("periodic_timer", "timer"),
        field("next_periodic_time", "int64"),
        field("unused1", "unused_buffer", size=3 * 8),
        field("irq_coalesced", "uint32", version_id=2),
        field("period", "uint32", version_id=2),
        field("base_rtc", "uint64", version_id=3),
        field("last_update", "uint64", version_id=3),
        field("offset", "int64", version_id=3),
        field("update_timer", "timer", version_id=3),
        field("next_alarm_time", "uint64", version_id=3),
    ],
    version_id=3,
    minimum_version_id=1,
    subsections=[
        describe(
            "mc146818rtc/irq_reinject_on_ack_count",
            [field("irq_reinject_on_ack_count", "uint16")],
            needed=lambda s: s["irq_reinject_on_ack_count"] != 0,
        )
    ],
)
