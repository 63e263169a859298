"""What ``miglab verify`` reports: a :class:`Finding` per inconsistency, with where it was seen.

Its own module so that each of verify's checks (:mod:`miglab.stream.verify`,
:mod:`~miglab.stream.verify_ram`, :mod:`~miglab.stream.verify_vmdesc`) makes
findings without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ("Finding", "Severity", "errors")

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One inconsistency.

    Attributes:
        severity: ``"error"`` (the stream is wrong) or ``"warning"`` (miglab
            could not check something, or had to guess).
        code: a short stable name for the kind of finding (``"footer-id"``).
        message: what was seen and what was expected.
        offset: byte offset in the input, when there is one.
    """

    severity: Severity
    code: str
    message: str
    offset: int | None = None

    def __str__(self) -> str:
        where = f"offset {self.offset} (0x{self.offset:x}): " if self.offset is not None else ""
        return f"{self.severity}: {self.code}: {where}{self.message}"


def errors(findings: list[Finding]) -> list[Finding]:
    """The findings of severity ``"error"``."""
    return [f for f in findings if f.severity == "error"]
