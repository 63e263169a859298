"""Python models of real QEMU devices that save and load through visitors.

Each model is a dataclass with QEMU's member names and one ``visit(v)``
method serving both directions (:mod:`miglab.devices.base`)::

    import miglab
    from miglab.devices import MC146818RTC, device_for_section

    data = open("data/q72-pc-q35-7.2-default.mig", "rb").read()
    stream = miglab.load(data)
    rtc = next(MC146818RTC.from_section(s, data) for s in stream.sections if s.name == "mc146818rtc")
    rtc.cmos_data[0x32]          # the century byte
    rtc.to_bytes()               # the section's payload, byte for byte

The marshalling pipeline (device -> tree -> filters -> JSON/CBOR and back)
is :mod:`miglab.devices.pipeline`; hand-built descriptions driven from device
values (``needed`` predicates, ``*_equal``/``le`` checks) are in
:mod:`miglab.devices.state`.
"""

from __future__ import annotations

from miglab.devices.base import Device, section_payload, visit_subsection
from miglab.devices.e1000 import E1000
from miglab.devices.fw_cfg import FwCfg
from miglab.devices.i8254 import I8254, PITChannel
from miglab.devices.pci import PCIDevice
from miglab.devices.rtc import MC146818RTC
from miglab.devices.serial import Fifo8, ISASerial, PCISerial, SerialState
from miglab.stream.model import Section

__all__ = (
    "DEVICES",
    "E1000",
    "I8254",
    "MC146818RTC",
    "Device",
    "Fifo8",
    "FwCfg",
    "ISASerial",
    "PCIDevice",
    "PCISerial",
    "PITChannel",
    "SerialState",
    "device_for_section",
    "section_payload",
    "visit_subsection",
)

DEVICES: dict[str, type[Device]] = {
    cls.VMSD_NAME: cls for cls in (E1000, FwCfg, I8254, ISASerial, MC146818RTC, PCISerial)
}


def device_for_section(section: Section) -> type[Device] | None:
    """The model for a section's idstr (``0000:00:02.0/e1000`` -> E1000), or None."""
    return DEVICES.get(section.name.rsplit("/", 1)[-1])


def __dir__() -> tuple[str, ...]:
    return __all__
