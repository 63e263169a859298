"""What every device model shares: one ``visit`` method, both directions.

A device model is a dataclass with named attributes (QEMU's device struct)
and one method, ``visit(v)``, written with the ``visit_*`` functions.  The
same method saves (an output visitor reads the attributes) and loads (an
input visitor returns values the method stores back), so::

    rtc = MC146818RTC.from_bytes(payload, version)  # QEMU's bytes -> object
    rtc.to_bytes()                                  # object -> the same bytes
    rtc.to_tree()                                   # object -> plain object tree

A model knows a section's payload, never a stream: cutting the payload out of a
stream's section is the stream's side (:mod:`miglab.stream.device_sections`).

``version_id`` is the stream version the instance was loaded at (or will be
saved at); a model's ``visit`` skips fields newer than it, as QEMU's
``VMSTATE_*_V`` fields are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from miglab.errors import MigrationFormatError
from miglab.visitors.base import Visitor, visit_start_struct, visit_start_subsection
from miglab.visitors.object_visitor import ObjectInputVisitor, ObjectOutputVisitor
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor, QEMUFileOutputVisitor

__all__ = ("Device", "visit_subsection")


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
