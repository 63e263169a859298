"""What a schema check finds: one :class:`Finding` per difference, and both directions.

A static check (:mod:`miglab.compat.schema_check`) never stops at the first
difference; it explains each one as a frozen :class:`Finding` with a kind from
:data:`KINDS` and a severity, and :class:`Compatibility` reads the findings of
both directions in schema-registry terms (BACKWARD, FORWARD, FULL).  The fleet
verdicts (:mod:`miglab.fleet.movable`) speak the same vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ("ERROR", "INFO", "KINDS", "WARNING", "Compatibility", "Finding", "breaks")

#: Severities: an ERROR breaks migration in the checked direction, a WARNING may (it depends
#: on run-time state the schema does not hold), INFO is a harmless difference worth knowing.
ERROR, WARNING, INFO = "error", "warning", "info"

#: Every finding kind, with what it means.
KINDS: Mapping[str, str] = {
    "machine": "the schemas were dumped for different machine types",
    "device-missing": "a device class of SRC has no counterpart in DST",
    "device-renamed": "a device class is known under another name in DST",
    "version": "the destination cannot load the stream's version (or the version changed)",
    "minimum-version": "the stream's version is below the destination's minimum_version_id",
    "field-renamed": "a field at the same place has another name",
    "field-reordered": "a field moved relative to the others",
    "field-resized": "a field's size, element count or struct-ness changed",
    "field-versioned": "a field is gated by a different version_id",
    "field-conditional": "a field is conditional (field_exists) on one side only",
    "field-added": "DST has a field SRC lacks",
    "field-removed": "SRC has a field DST lacks",
    "subsection-missing": "SRC has a subsection DST does not know",
    "subsection-added": "DST has a subsection SRC lacks",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference between two schemas, as seen by a stream going from SRC to DST.

    Attributes:
        device: the SRC device class (``"hpet"``), or ``"vmschkmachine"`` for the machine.
        field: member path inside the device (``"timer.cmp"``, ``"hpet/offset.hpet_offset"``),
            or None for the device as a whole.
        kind: one of :data:`KINDS`.
        detail: what differs, with both values.
        severity: :data:`ERROR`, :data:`WARNING` or :data:`INFO`.
    """

    device: str
    field: str | None
    kind: str
    detail: str
    severity: str

    def to_dict(self) -> dict[str, str | None]:
        """The finding as the JSON object ``check-schemas --json`` prints."""
        return {
            "device": self.device,
            "field": self.field,
            "kind": self.kind,
            "detail": self.detail,
            "severity": self.severity,
        }


@dataclass(frozen=True, slots=True)
class Compatibility:
    """Both directions between two schemas.

    Attributes:
        backward: findings for SRC's streams loaded by DST.
        forward: findings for DST's streams loaded by SRC.
    """

    backward: tuple[Finding, ...]
    forward: tuple[Finding, ...]

    @property
    def backward_ok(self) -> bool:
        """DST loads every stream SRC writes (as far as the schemas tell)."""
        return not breaks(self.backward)

    @property
    def forward_ok(self) -> bool:
        """SRC loads every stream DST writes."""
        return not breaks(self.forward)

    @property
    def full_ok(self) -> bool:
        """Both directions hold."""
        return self.backward_ok and self.forward_ok

    def summary(self) -> str:
        """One line naming which of BACKWARD, FORWARD and FULL hold."""

        def word(ok: bool, findings: tuple[Finding, ...]) -> str:
            errors = sum(f.severity == ERROR for f in findings)
            return "holds" if ok else f"broken, {errors} error{'s' * (errors != 1)}"

        return (
            f"BACKWARD (DST loads SRC streams): {word(self.backward_ok, self.backward)}; "
            f"FORWARD (SRC loads DST streams): {word(self.forward_ok, self.forward)}; "
            f"FULL: {'holds' if self.full_ok else 'broken'}"
        )


def breaks(findings: tuple[Finding, ...] | list[Finding]) -> bool:
    """True iff some finding breaks migration (has severity :data:`ERROR`)."""
    return any(f.severity == ERROR for f in findings)
