"""QEMU's legacy stream format: framing, configuration, RAM, vmdesc.

:func:`load` reads a stream into the object tree, :meth:`Stream.to_bytes`
and :func:`save` write it back byte for byte; :class:`RamPages` gives the
final content of each RAM page of a live (multi-pass, XBZRLE) stream.
"""

from __future__ import annotations

from miglab.lazy import lazy_attributes

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from miglab.stream.configuration import CONFIGURATION, configuration_state, machine_of
    from miglab.stream.model import CommandRecord, Opaque, Record, Section, SectionKind, Stream
    from miglab.stream.pages import RamPages
    from miglab.stream.ram import RamBlock, RamContext, RamPayload
    from miglab.stream.reader import load
    from miglab.stream.writer import save, stream_to_bytes, write_to
    from miglab.wire import Command, RamFlag, SectionType

_LAZY = {
    "CONFIGURATION": "miglab.stream.configuration",
    "configuration_state": "miglab.stream.configuration",
    "machine_of": "miglab.stream.configuration",
    "Command": "miglab.wire",
    "RamFlag": "miglab.wire",
    "SectionType": "miglab.wire",
    "CommandRecord": "miglab.stream.model",
    "Opaque": "miglab.stream.model",
    "Record": "miglab.stream.model",
    "Section": "miglab.stream.model",
    "SectionKind": "miglab.stream.model",
    "Stream": "miglab.stream.model",
    "RamPages": "miglab.stream.pages",
    "RamBlock": "miglab.stream.ram",
    "RamContext": "miglab.stream.ram",
    "RamPayload": "miglab.stream.ram",
    "load": "miglab.stream.reader",
    "save": "miglab.stream.writer",
    "stream_to_bytes": "miglab.stream.writer",
    "write_to": "miglab.stream.writer",
}

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


__getattr__ = lazy_attributes(__name__, _LAZY)
