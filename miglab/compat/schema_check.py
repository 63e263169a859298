"""Static compatibility check of two ``-dump-vmstate`` schemas, complete rather than first-error.

QEMU's ``scripts/vmstate-static-checker.py`` stops comparing a vmsd at its first field
mismatch.  This module compares everything and explains each difference as a
:class:`~miglab.findings.Finding` (the record ``verify`` reports in too) with a code from
:data:`CODES`, the SRC device class and the member path; :class:`Compatibility` reads the
findings of both directions.  The schemas it compares are the model of
:mod:`miglab.vmstate.schema`.  It models what actually crosses the wire (QEMU-FORMAT.md 1.6, 4):

* a device's sections are loaded by the destination's vmsd at the *stream's* version, which
  must lie in the destination's ``[minimum_version_id, version_id]``;
* the source writes each field whose ``version_id`` is at most its own version, the
  destination reads each field whose ``version_id`` is at most the stream's version; nested
  structs are saved and loaded at each side's own struct version;
* field names are not on the wire, sizes and order are; subsections are looked up by name.

So a field added with a newer version is fine (info), one added without a version bump
breaks loading (error).  Known-benign renames come from ``knowledge/schema-renames.json``.
Directions use schema-registry terms, reading SRC as the older and DST as the newer schema:
BACKWARD = DST loads SRC's streams, FORWARD = SRC loads DST's streams, FULL = both.
With ``machine=`` only the device classes a machine of that type can have are checked
(:mod:`miglab.compat.machine_devices`: from what the real builds say about their boards
and buses), judged for the schema that writes the stream.

Example:
    >>> report = compatibility("data/schema-7.2-pc-q35-7.2.json", "data/schema-10.0-pc-q35-10.0.json")
    >>> report.summary()
    'BACKWARD (DST loads SRC streams): broken, ...'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from miglab.compat.machine_devices import MachineDevices, has_machine_type, machine_devices
from miglab.compat.vmsd_compare import Renames, VmsdComparison, known_renames
from miglab.findings import ERROR, INFO, WARNING, Finding, errors
from miglab.vmstate.schema import (
    Schema,
    SchemaField,
    SchemaSource,
    SchemaVmsd,
    load_schema,
)

# The schema model is part of this check's API, so it is importable from here too.
__all__ = (
    "CODES",
    "Compatibility",
    "MachineDevices",
    "Schema",
    "SchemaField",
    "SchemaSource",
    "SchemaVmsd",
    "check_schemas",
    "compatibility",
    "load_schema",
    "machine_devices",
)

#: The code of every finding this check makes, with what it means.  Severities: an ERROR
#: breaks migration in the checked direction, a WARNING may (it depends on run-time state the
#: schema does not hold), INFO is a harmless difference worth knowing.
CODES: Mapping[str, str] = {
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
        return not errors(self.backward)

    @property
    def forward_ok(self) -> bool:
        """SRC loads every stream DST writes."""
        return not errors(self.forward)

    @property
    def full_ok(self) -> bool:
        """Both directions hold."""
        return self.backward_ok and self.forward_ok

    def summary(self) -> str:
        """One line naming which of BACKWARD, FORWARD and FULL hold."""

        def word(ok: bool, findings: tuple[Finding, ...]) -> str:
            n = len(errors(findings))
            return "holds" if ok else f"broken, {n} error{'s' * (n != 1)}"

        return (
            f"BACKWARD (DST loads SRC streams): {word(self.backward_ok, self.backward)}; "
            f"FORWARD (SRC loads DST streams): {word(self.forward_ok, self.forward)}; "
            f"FULL: {'holds' if self.full_ok else 'broken'}"
        )


def check_schemas(
    src: SchemaSource, dst: SchemaSource, *, machine: str | None = None
) -> list[Finding]:
    """Every finding for streams written by ``src`` and loaded by ``dst``.

    Args:
        src: the source schema (a path, the file's bytes, its parsed JSON or a :class:`Schema`).
        dst: the destination schema, likewise.
        machine: check only the device classes a machine of this type of SRC's build can
            have (``"pc-q35-7.2"``; :func:`machine_devices`); when a side's build has no such
            machine type, that is the one finding (an error).

    Raises:
        DescriptionError: a schema is malformed or exceeds ``LIMITS``.
        CompatError: ``machine`` is not a pc/q35 machine type.
    """
    source, destination = load_schema(src), load_schema(dst)
    if machine is not None:
        # One machine type on both ends: a side whose build lacks it ends the check.
        for side, schema in (("SRC", source), ("DST", destination)):
            if not has_machine_type(schema, machine):
                detail = f"{side}'s build has no machine type {machine!r}"
                return [Finding(ERROR, "machine", detail, device="vmschkmachine")]
        can = machine_devices(source, machine)
        source = Schema(source.machine, {k: v for k, v in source.devices.items() if k in can})
    renames = known_renames()
    findings: list[Finding] = []
    if source.machine != destination.machine:
        findings.append(
            Finding(
                WARNING,
                "machine",
                f"SRC machine {source.machine!r}, DST machine {destination.machine!r}",
                device="vmschkmachine",
            )
        )
    for device, vmsd in source.devices.items():
        findings += _check_device(device, vmsd, destination, renames)
    return findings


def compatibility(
    src: SchemaSource, dst: SchemaSource, *, machine: str | None = None
) -> Compatibility:
    """Check both directions (see :class:`Compatibility`), for one ``machine`` type if given."""
    source, destination = load_schema(src), load_schema(dst)
    return Compatibility(
        tuple(check_schemas(source, destination, machine=machine)),
        tuple(check_schemas(destination, source, machine=machine)),
    )


def _check_device(
    device: str, vmsd: SchemaVmsd, destination: Schema, renames: Renames
) -> list[Finding]:
    """Findings for one SRC device class, resolving it in DST by class name, rename or vmsd."""
    other = destination.devices.get(device)
    if other is not None:
        return list(VmsdComparison(device, renames).section(vmsd, other, None))
    if device in renames.devices:
        new, why = renames.devices[device]
        if new in destination.devices:
            detail = f"known as {new!r} in DST: {why}"
            found = Finding(INFO, "device-renamed", detail, device=device)
            return [
                found,
                *VmsdComparison(device, renames).section(vmsd, destination.devices[new], None),
            ]
    # Sections are named after the vmsd, so another class saving the same vmsd can load them.
    candidates = sorted(k for k, v in destination.devices.items() if v.name == vmsd.name)
    for candidate in candidates:
        findings = list(
            VmsdComparison(device, renames).section(vmsd, destination.devices[candidate], None)
        )
        if not errors(findings):
            detail = f"class gone from DST; class {candidate!r} saves the same vmsd {vmsd.name!r}"
            return [Finding(INFO, "device-renamed", detail, device=device), *findings]
    also = (
        f"; DST classes with vmsd {vmsd.name!r} differ: {', '.join(candidates)}"
        if candidates
        else ""
    )
    detail = f"no class {device!r} in DST{also}"
    return [Finding(ERROR, "device-missing", detail, device=device)]
