"""Python models of real QEMU devices that save and load through visitors.

Each model is a dataclass with QEMU's member names and one ``visit(v)``
method serving both directions (:mod:`miglab.devices.base`)::

    from miglab.devices import MC146818RTC

    rtc = MC146818RTC.from_bytes(payload, version_id)   # a section's payload
    rtc.cmos_data[0x32]          # the century byte
    rtc.to_bytes()               # the payload, byte for byte

Models know payloads, not streams (the layers import downward): a stream's
device sections meet the models in :mod:`miglab.stream.device_sections`
(``section_payload``, ``device_for_section``, ``load_device``).

The marshalling pipeline (device -> tree -> filters -> JSON/CBOR and back)
is :mod:`miglab.devices.pipeline`; hand-built descriptions driven from device
values (``needed`` predicates, ``*_equal``/``le`` checks) are in
:mod:`miglab.devices.state`.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from miglab.lazy import lazy_attributes

if TYPE_CHECKING:
    from miglab.devices.base import Device, visit_subsection
    from miglab.devices.e1000 import E1000
    from miglab.devices.fw_cfg import FwCfg
    from miglab.devices.i8254 import I8254, PITChannel
    from miglab.devices.pci import PCIDevice
    from miglab.devices.rtc import MC146818RTC
    from miglab.devices.serial import Fifo8, ISASerial, PCISerial, SerialState

    DEVICES: dict[str, type[Device]]

# The models load on first use: reading a stream imports one of them (the slirp
# reader, miglab.devices.slirp), not all of them.
_LAZY = {
    "Device": "miglab.devices.base",
    "visit_subsection": "miglab.devices.base",
    "E1000": "miglab.devices.e1000",
    "FwCfg": "miglab.devices.fw_cfg",
    "I8254": "miglab.devices.i8254",
    "PITChannel": "miglab.devices.i8254",
    "PCIDevice": "miglab.devices.pci",
    "MC146818RTC": "miglab.devices.rtc",
    "Fifo8": "miglab.devices.serial",
    "ISASerial": "miglab.devices.serial",
    "PCISerial": "miglab.devices.serial",
    "SerialState": "miglab.devices.serial",
}

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
    "model_for",
    "visit_subsection",
)


@cache
def _devices() -> dict[str, type[Device]]:
    """VMSD name -> model, for every model (``DEVICES``)."""
    from miglab.devices.e1000 import E1000
    from miglab.devices.fw_cfg import FwCfg
    from miglab.devices.i8254 import I8254
    from miglab.devices.rtc import MC146818RTC
    from miglab.devices.serial import ISASerial, PCISerial

    return {cls.VMSD_NAME: cls for cls in (E1000, FwCfg, I8254, ISASerial, MC146818RTC, PCISerial)}


def model_for(idstr: str) -> type[Device] | None:
    """The model for a section idstr (``0000:00:02.0/e1000`` -> E1000), or None."""
    return _devices().get(idstr.rsplit("/", 1)[-1])


_lazy = lazy_attributes(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    if name == "DEVICES":
        return _devices()
    return _lazy(name)


def __dir__() -> tuple[str, ...]:
    return __all__
