"""What every device model shares: one ``visit`` method, both directions.

A device model is a dataclass with named attributes (QEMU's device struct)
and one method, ``visit(v)``, written with the ``visit_*`` functions.  The
same method saves (an output visitor reads the attributes) and loads (an
input visitor returns values the method stores back), so::

    rtc = MC146818RTC.from_section(section, data)   # QEMU's bytes -> object
    rtc.to_bytes()                                  # object -> the same bytes
    rtc.to_tree()                                   # object -> plain object tree

``version_id`` is the stream version the instance was loaded at (or will be
saved at); a model's ``visit`` skips fields newer than it, as QEMU's
``VMSTATE_*_V`` fields are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from miglab.errors import MigrationFormatError
from miglab.stream.model import Opaque, Section
from miglab.visitors.base import Visitor, visit_start_struct, visit_start_subsection
from miglab.visitors.object_visitor import ObjectInputVisitor, ObjectOutputVisitor
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor, QEMUFileOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("Device", "section_payload", "visit_subsection")


def section_payload(section: Section, data: bytes | memoryview | None = None) -> bytes:
    """The payload bytes of a FULL/START device section, without header and footer.

    Args:
        section: a section read by :func:`miglab.load`.
        data: the stream's bytes; when given, the payload is cut from them at
            ``section.offset`` (the bytes QEMU wrote).  Without it the payload
            is re-encoded from the decoded state by the stream writer's walker.
    """
    if data is not None and section.offset >= 0:
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


def visit_subsection(v: Visitor, name: str, version: int, needed: bool) -> bool:
    """Visit a subsection header and, when the subsection is there, start its struct.

    ``needed`` is the output side's decision (QEMU's ``.needed`` function);
    an input visitor ignores it and reports what the input holds.  When this
    returns True the caller visits the members and ends with
    ``visit_end_struct(v)``.
    """
    if visit_start_subsection(v, name, version, needed) is None:
        return False
    visit_start_struct(v, name)
    return True


@dataclass(kw_only=True)
class Device:
    """Base of the device models.

    Subclasses are dataclasses whose fields are the device's state and set
    ``VMSD_NAME`` (QEMU's vmsd name, also the section idstr suffix),
    ``VERSION`` (the version QEMU writes) and ``MINIMUM_VERSION``.

    Attributes:
        version_id: stream version of this instance; 0 means ``VERSION``.
    """

    VMSD_NAME: ClassVar[str]
    VERSION: ClassVar[int]
    MINIMUM_VERSION: ClassVar[int] = 1

    version_id: int = 0

    def __post_init__(self) -> None:
        if self.version_id == 0:
            self.version_id = self.VERSION

    def visit(self, v: Visitor) -> None:
        """Save (output visitor) or load (input visitor) this device's state."""
        raise NotImplementedError

    # --- QEMU's binary form ---------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes | memoryview, version_id: int | None = None) -> Self:
        """Load a device from a section payload; every byte must be used.

        Raises:
            MigrationFormatError: the bytes are short (TruncatedStreamError),
                malformed, or longer than the state (trailing bytes).
        """
        version = cls.VERSION if version_id is None else version_id
        if not cls.MINIMUM_VERSION <= version <= cls.VERSION:
            raise MigrationFormatError(
                f"{cls.VMSD_NAME} version {version} is outside "
                f"[{cls.MINIMUM_VERSION}, {cls.VERSION}]",
                path=cls.VMSD_NAME,
            )
        device = cls(version_id=version)
        r = QEMUFileReader(data)
        device.visit(QEMUFileInputVisitor(r))
        if r.pos != r.end:
            raise MigrationFormatError(
                f"{r.end - r.pos} bytes left after the {cls.VMSD_NAME} state",
                offset=r.pos,
                path=cls.VMSD_NAME,
            )
        return device

    @classmethod
    def from_section(cls, section: Section, data: bytes | memoryview | None = None) -> Self:
        """Load a device from a stream section (see :func:`section_payload`)."""
        return cls.from_bytes(section_payload(section, data), section.version_id)

    def to_bytes(self) -> bytes:
        """The section payload QEMU would write for this state."""
        w = QEMUFileWriter()
        self.visit(QEMUFileOutputVisitor(w))
        return w.getvalue()

    # --- the object tree ------------------------------------------------
    def to_tree(self) -> dict[str, Any]:
        """This state as a plain object tree (through ObjectOutputVisitor)."""
        v = ObjectOutputVisitor()
        self.visit(v)
        tree: dict[str, Any] = v.complete()
        return tree

    @classmethod
    def from_tree(cls, tree: Any, version_id: int | None = None) -> Self:
        """Load a device from a plain object tree (through ObjectInputVisitor)."""
        device = cls(version_id=cls.VERSION if version_id is None else version_id)
        device.visit(ObjectInputVisitor(tree))
        return device
