"""What a check reports: one :class:`Finding` per problem, on one severity scale.

``miglab verify`` (:mod:`miglab.stream.verify`) checks a stream's bytes,
``miglab check-schemas`` (:mod:`miglab.compat.schema_check`) two schemas, and
the fleet check (:mod:`miglab.fleet.movable`) a stream's layout against a
destination.  They report in one record so that a caller (a notebook, a
script reading ``--json``) handles every check the same way.  A finding says
where, as :class:`~miglab.errors.MiglabError` does: a byte ``offset`` in the
input for a stream, a ``device`` and a member ``path`` inside it for a schema,
or both.

It sits beside :mod:`miglab.errors`, below every layer, since checks in
different layers make findings.

Example:
    >>> f = Finding(ERROR, "trailing-bytes", "1 bytes after the end of the stream", offset=1000)
    >>> str(f)
    'error: trailing-bytes: offset 1000 (0x3e8): 1 bytes after the end of the stream'
    >>> f.to_dict()["code"]
    'trailing-bytes'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ("ERROR", "INFO", "SEVERITIES", "WARNING", "Finding", "Severity", "errors")

Severity = Literal["error", "warning", "info"]

#: The input is wrong, or migration breaks in the checked direction.
ERROR: Final = "error"
#: It may be wrong: it depends on what the check cannot see (run-time state, a guess it had
#: to make, a device it could not decode).
WARNING: Final = "warning"
#: A harmless difference worth knowing.
INFO: Final = "info"
#: The scale, most severe first (the order ``check-schemas`` prints in).
SEVERITIES: Final[tuple[Severity, ...]] = (ERROR, WARNING, INFO)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem a check found, and where.

    Attributes:
        severity: :data:`ERROR`, :data:`WARNING` or :data:`INFO`.
        code: a short stable name for the kind of finding (``"footer-id"``,
            ``"device-missing"``); each check lists its own.
        message: what was seen and what was expected (both values of a difference).
        offset: byte offset in the input, when there is one.
        device: the device it is about (a schema's device class, a section's idstr),
            or ``"vmschkmachine"`` for a schema's machine.
        path: member path inside the device (``"timer.cmp"``, ``"hpet/offset.hpet_offset"``),
            or None for the device as a whole.
    """

    severity: Severity
    code: str
    message: str
    offset: int | None = field(default=None, kw_only=True)
    device: str | None = field(default=None, kw_only=True)
    path: str | None = field(default=None, kw_only=True)

    @property
    def where(self) -> str:
        """The location as text: ``"hpet.timer.cmp"``, ``"offset 9 (0x9)"``, both, or ``""``."""
        parts = []
        if self.device is not None:
            parts.append(self.device if self.path is None else f"{self.device}.{self.path}")
        elif self.path is not None:
            parts.append(self.path)
        if self.offset is not None:
            parts.append(f"offset {self.offset} (0x{self.offset:x})")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where
        return f"{self.severity}: {self.code}: {where + ': ' if where else ''}{self.message}"

    def to_dict(self) -> dict[str, str | int | None]:
        """The finding as the JSON object ``verify --json`` and ``check-schemas --json`` print.

        Every key is always there (None where the finding has no such location).
        """
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "offset": self.offset,
            "device": self.device,
            "path": self.path,
        }


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings of severity :data:`ERROR`, in their order."""
    return [f for f in findings if f.severity == ERROR]
