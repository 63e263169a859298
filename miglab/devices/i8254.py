"""The i8254 programmable interval timer (QEMU's ``hw/timer/i8254_common.c``, ``vmstate_pit_common``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from miglab.devices.base import Device
from miglab.visitors.base import (
    Visitor,
    visit_end_list,
    visit_end_struct,
    visit_next_list,
    visit_start_list,
    visit_start_struct,
    visit_type_i32,
    visit_type_i64,
    visit_type_u8,
    visit_type_u16,
    visit_type_u32,
)

__all__ = ("I8254", "PITChannel")

CHANNELS = 3


@dataclass
class PITChannel:
    """One counter of the PIT (``vmstate_pit_channel``, "pit channel" v2).

    ``irq_disabled`` is not part of the channel's own description: only
    channel 0's is sent, by the PIT itself.
    """

    count: int = 0
    latched_count: int = 0
    count_latched: int = 0
    status_latched: int = 0
    status: int = 0
    read_state: int = 0
    write_state: int = 0
    write_latch: int = 0
    rw_mode: int = 0
    mode: int = 0
    bcd: int = 0
    gate: int = 0
    count_load_time: int = 0
    next_transition_time: int = 0
    irq_disabled: int = 0

    def visit(self, v: Visitor, name: str | None) -> None:
        """Save or load one channel as struct member ``name``."""
        visit_start_struct(v, name)
        self.count = visit_type_i32(v, "count", self.count)
        self.latched_count = visit_type_u16(v, "latched_count", self.latched_count)
        for attr in (
            "count_latched",
            "status_latched",
            "status",
            "read_state",
            "write_state",
            "write_latch",
            "rw_mode",
            "mode",
            "bcd",
            "gate",
        ):
            setattr(self, attr, visit_type_u8(v, attr, getattr(self, attr)))
        self.count_load_time = visit_type_i64(v, "count_load_time", self.count_load_time)
        self.next_transition_time = visit_type_i64(
            v, "next_transition_time", self.next_transition_time
        )
        visit_end_struct(v)


@dataclass
class I8254(Device):
    """The PIT: three channels, channel 0 wired to IRQ 0.

    Channel 0's ``next_transition_time`` is sent a second time after the
    channels (the slot of the old IRQ timer); on load the later copy wins,
    as in QEMU.  Member names are QEMU's (``channels[0].irq_disabled``).
    """

    VMSD_NAME = "i8254"
    VERSION = 3
    MINIMUM_VERSION = 2

    channels: list[PITChannel] = field(
        default_factory=lambda: [PITChannel() for _ in range(CHANNELS)]
    )

    def visit(self, v: Visitor) -> None:
        """Save or load ``vmstate_pit_common``."""
        visit_start_struct(v, self.VMSD_NAME)
        ch0 = self.channels[0]
        if self.version_id >= 3:
            ch0.irq_disabled = visit_type_u32(v, "channels[0].irq_disabled", ch0.irq_disabled)
        n = visit_start_list(v, "channels", len(self.channels))
        if n != CHANNELS:
            raise v.error(f"has {n} channels, expected {CHANNELS}", "channels")
        for ch in self.channels:
            ch.visit(v, None)
            visit_next_list(v)
        visit_end_list(v)
        ch0.next_transition_time = visit_type_i64(
            v, "channels[0].next_transition_time", ch0.next_transition_time
        )
        visit_end_struct(v)
