"""QEMU's legacy stream format: framing, configuration, RAM, vmdesc.

:func:`load` reads a stream into the object tree, :meth:`Stream.to_bytes`
and :func:`save` write it back byte for byte; :class:`RamPages` gives the
final content of each RAM page of a live (multi-pass, XBZRLE) stream.
"""

from __future__ import annotations

from miglab.stream.configuration import CONFIGURATION, configuration_state, machine_of
from miglab.stream.model import CommandRecord, Opaque, Record, Section, SectionKind, Stream
from miglab.stream.pages import RamPages
from miglab.stream.ram import RamBlock, RamContext, RamPayload
from miglab.stream.reader import load
from miglab.stream.writer import save, stream_to_bytes, write_to
from miglab.wire import Command, RamFlag, SectionType

__all__ = (
    "CONFIGURATION",
    "Command",
    "CommandRecord",
    "Opaque",
    "RamBlock",
    "RamContext",
    "RamFlag",
    "RamPages",
    "RamPayload",
    "Record",
    "Section",
    "SectionKind",
    "SectionType",
    "Stream",
    "configuration_state",
    "load",
    "machine_of",
    "save",
    "stream_to_bytes",
    "write_to",
)
