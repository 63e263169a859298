"""A stream's device sections meet the Python device models (:mod:`miglab.devices`).

The models load from a section's payload bytes and know nothing of streams (the layers import
downward); this module is the stream's side of that meeting::

    import miglab
    from miglab.stream.device_sections import load_device, section_payload

    data = open("data/q72-pc-q35-7.2-default.mig", "rb").read()
    section = miglab.load(data).device("mc146818rtc")
    rtc = load_device(section, data)      # an MC146818RTC, from the bytes QEMU wrote
    rtc.to_bytes() == section_payload(section, data)
"""

from __future__ import annotations

from typing import TypeVar, overload

from miglab.devices import Device, model_for
from miglab.errors import MigrationFormatError, NotFoundError
from miglab.stream.model import Opaque, Section
from miglab.visitors.qemufile import QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("device_for_section", "load_device", "section_payload")

D = TypeVar("D", bound=Device)


def section_payload(section: Section, data: bytes | memoryview | None = None) -> bytes:
    """The payload bytes of a FULL/START device section, without header and footer.

    Args:
        section: a section read by :func:`miglab.load`.
        data: the stream's bytes; when given, the payload is cut from them at
            ``section.offset`` (the bytes QEMU wrote).  Without it the payload
            is re-encoded from the decoded state on the one walk.

    Raises:
        MigrationFormatError: the section carries RAM, not device state.
    """
    if data is not None and section.offset >= 0:
        # QEMU_VM_SECTION_FULL: type, be32 section id, counted idstr, be32 instance, be32 version
        header = 1 + 4 + 1 + len(section.name.encode("utf-8", "surrogateescape")) + 4 + 4
        footer = 5 if section.footer else 0
        start = section.offset + header
        return bytes(data[start : section.offset + section.size - footer])
    payload = section.payload
    if isinstance(payload, Opaque):
        return bytes(payload.data)
    if isinstance(payload, VMState):
        w = QEMUFileWriter()
        visit_vmstate(QEMUFileOutputVisitor(w), payload.desc, payload, section.version_id)
        return w.getvalue()
    raise MigrationFormatError(
        f"section {section.name!r} carries {type(payload).__name__}, not device state",
        offset=section.offset,
    )


def device_for_section(section: Section) -> type[Device] | None:
    """The model for a section's idstr (``0000:00:02.0/e1000`` -> E1000), or None."""
    return model_for(section.name)


@overload
def load_device(
    section: Section, data: bytes | memoryview | None = None, *, model: type[D]
) -> D: ...
@overload
def load_device(section: Section, data: bytes | memoryview | None = None) -> Device: ...
def load_device(
    section: Section,
    data: bytes | memoryview | None = None,
    *,
    model: type[Device] | None = None,
) -> Device:
    """The device model loaded from ``section`` (payload as :func:`section_payload` gives it).

    Args:
        section: a device section.
        data: the stream's bytes, to load from the bytes QEMU wrote.
        model: the model class (default: the one for the section's idstr).

    Raises:
        NotFoundError: no model for the section's idstr.
        MigrationFormatError: the payload does not fit the model.
    """
    cls = model if model is not None else device_for_section(section)
    if cls is None:
        raise NotFoundError(f"no device model for section {section.name!r}")
    return cls.from_bytes(section_payload(section, data), section.version_id)
