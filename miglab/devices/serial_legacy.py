"""The UART's save/load handler, converted to visitors one step at a time.

QEMU's serial device once had a hand-written ``serial_save``/``serial_load``
pair calling ``qemu_put_be16``/``qemu_get_be16`` on a ``QEMUFile``.  The
issue's migration path keeps every intermediate step so each can be tested
against real sections (the bytes must never change):

1. :func:`serial_save` / :func:`serial_load`: the legacy pair, QEMUFile API.
2. :func:`serial_visit_file`: one function for both directions, still called
   with the ``QEMUFile``; it finds the visitor with :func:`visitor_for` and
   each ``qemu_put_be8(f, s.rbr)`` became ``visit_type_u8(v, "rbr", s.rbr)``.
3. :func:`serial_visit`: the ``QEMUFile`` gone from the signature, only the
   visitor; this is :meth:`SerialState.visit_registers`, which
   :meth:`SerialState.visit` completes with the subsections.

Only the registers are handled by steps 1 and 2, as by the legacy code;
sections that carry subsections need step 3's full walk.
"""

from __future__ import annotations

from miglab.devices.serial import SERIAL_VERSION, SerialState
from miglab.visitors.base import Visitor, visit_type_u8, visit_type_u16
from miglab.visitors.qemufile import (
    QEMUFileReader,
    QEMUFileWriter,
    qemu_get_be8,
    qemu_get_be16,
    qemu_put_be8,
    qemu_put_be16,
)
from miglab.visitors.qemufile_visitor import visitor_for

__all__ = ("serial_load", "serial_save", "serial_visit", "serial_visit_file")

_BYTE_REGISTERS = ("rbr", "ier", "iir", "lcr", "mcr", "lsr", "msr", "scr")


# --- step 1: the legacy handler ------------------------------------------
def serial_save(f: QEMUFileWriter, s: SerialState, version_id: int = SERIAL_VERSION) -> None:
    """Write the UART registers with the legacy ``qemu_put_be*`` API."""
    qemu_put_be16(f, s.divider)
    qemu_put_be8(f, s.rbr)
    qemu_put_be8(f, s.ier)
    qemu_put_be8(f, s.iir)
    qemu_put_be8(f, s.lcr)
    qemu_put_be8(f, s.mcr)
    qemu_put_be8(f, s.lsr)
    qemu_put_be8(f, s.msr)
    qemu_put_be8(f, s.scr)
    if version_id >= 3:
        qemu_put_be8(f, s.fcr_vmstate)


def serial_load(f: QEMUFileReader, s: SerialState, version_id: int = SERIAL_VERSION) -> None:
    """Read the UART registers with the legacy ``qemu_get_be*`` API."""
    s.divider = qemu_get_be16(f)
    s.rbr = qemu_get_be8(f)
    s.ier = qemu_get_be8(f)
    s.iir = qemu_get_be8(f)
    s.lcr = qemu_get_be8(f)
    s.mcr = qemu_get_be8(f)
    s.lsr = qemu_get_be8(f)
    s.msr = qemu_get_be8(f)
    s.scr = qemu_get_be8(f)
    if version_id >= 3:
        s.fcr_vmstate = qemu_get_be8(f)


# --- step 2: one function, visitor found through the QEMUFile -------------
def serial_visit_file(
    f: QEMUFileReader | QEMUFileWriter, s: SerialState, version_id: int = SERIAL_VERSION
) -> None:
    """Save or load the registers through the visitor registered on ``f``."""
    v = visitor_for(f)
    s.divider = visit_type_u16(v, "divider", s.divider)
    for name in _BYTE_REGISTERS:
        setattr(s, name, visit_type_u8(v, name, getattr(s, name)))
    if version_id >= 3:
        s.fcr_vmstate = visit_type_u8(v, "fcr_vmstate", s.fcr_vmstate)


# --- step 3: the QEMUFile gone ----------------------------------------------
def serial_visit(v: Visitor, s: SerialState, version_id: int = SERIAL_VERSION) -> None:
    """Save or load the registers through ``v`` alone (any visitor, any direction)."""
    s.visit_registers(v, version_id)
