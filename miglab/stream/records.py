"""The records of a stream: sections (device state, RAM chunks, opaque bytes) and commands.

One :class:`Section` or :class:`CommandRecord` per record on the wire, in the tree every
seam talks to (:class:`~miglab.stream.model.Stream` holds them in stream order).  They
keep what the legacy format needs to come back byte for byte: section ids and kinds,
whether a footer followed, and every byte miglab could not decode as an :class:`Opaque`
span.  How they are framed on the wire is :mod:`miglab.stream.framing`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from miglab.stream.ram import RamPayload
from miglab.vmstate.state import VMState
from miglab.wire import Command, SectionType

__all__ = ("CommandRecord", "Opaque", "Payload", "Record", "Section", "SectionKind")


class SectionKind(StrEnum):
    """The four section record kinds, by the names people use."""

    START = "start"
    PART = "part"
    END = "end"
    FULL = "full"

    @property
    def type_byte(self) -> SectionType:
        """The QEMU_VM_SECTION_* byte of this kind."""
        return SectionType[self.name]

    @property
    def has_full_header(self) -> bool:
        """START and FULL carry idstr, instance and version; PART and END only the id."""
        return self in (SectionKind.START, SectionKind.FULL)


@dataclass(slots=True)
class Opaque:
    """Bytes miglab kept without decoding, and why.

    Attributes:
        data: the bytes (a view into the input when read from one).
        reason: why they were not decoded (no description, unknown format...).
    """

    data: memoryview | bytes
    reason: str

    def __len__(self) -> int:
        return len(self.data)


Payload = VMState | RamPayload | Opaque


@dataclass(slots=True)
class Section:
    """A section record: a device's state (FULL) or a chunk of an iterative one.

    Attributes:
        kind: start / part / end / full.
        section_id: QEMU's per-source section id (PART/END refer to a START's).
        name: the idstr (``ram``, ``0000:00:03.0/e1000``); for PART/END taken
            from their START, as it is not on the wire.
        instance_id: separates equal idstrs (``cpu`` 0..N-1).
        version_id: version of the device's state.
        payload: decoded state, RAM records, or opaque bytes.
        footer: whether a QEMU_VM_SECTION_FOOTER followed the payload.
        offset: input offset of the record's type byte (-1 if built in memory).
        size: bytes of the record in the input, header and footer included.
    """

    kind: SectionKind
    section_id: int
    name: str
    instance_id: int
    version_id: int
    payload: Payload
    footer: bool = True
    offset: int = -1
    size: int = 0

    @property
    def decoded(self) -> bool:
        """True unless the payload was kept opaque."""
        return not isinstance(self.payload, Opaque)


@dataclass(slots=True)
class CommandRecord:
    """An in-band command (QEMU_VM_COMMAND).

    Attributes:
        command: the MIG_CMD_* number (unknown numbers are kept as ints).
        data: the command's data bytes.
        packaged: for PACKAGED, the records of the nested blob that follows.
        offset: input offset of the type byte (-1 if built in memory).
        size: bytes of the record in the input, a PACKAGED blob included.
    """

    command: int
    data: bytes = b""
    packaged: list[Record] | None = None
    offset: int = -1
    size: int = 0

    @property
    def name(self) -> str:
        """MIG_CMD name, or ``CMD_0x..`` for a number QEMU does not define."""
        try:
            return Command(self.command).name
        except ValueError:
            return f"CMD_0x{self.command:x}"


Record = Section | CommandRecord
