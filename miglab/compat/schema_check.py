"""Static compatibility check of two ``-dump-vmstate`` schemas, complete rather than first-error.

QEMU's ``scripts/vmstate-static-checker.py`` stops comparing a vmsd at its first field
mismatch.  This module compares everything and explains each difference as a
:class:`~miglab.compat.findings.Finding`; the schemas it compares are the model of
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

from miglab.compat.findings import (
    ERROR,
    INFO,
    KINDS,
    WARNING,
    Compatibility,
    Finding,
    breaks,
)
from miglab.compat.machine_devices import MachineDevices, has_machine_type, machine_devices
from miglab.compat.vmsd_compare import Renames, VmsdComparison, known_renames
from miglab.vmstate.schema import (
    Schema,
    SchemaField,
    SchemaSource,
    SchemaVmsd,
    load_schema,
)

# The model and the findings are part of this check's API, so they are importable from here too.
__all__ = (
    "ERROR",
    "INFO",
    "KINDS",
    "WARNING",
    "Compatibility",
    "Finding",
    "MachineDevices",
    "Schema",
    "SchemaField",
    "SchemaSource",
    "SchemaVmsd",
    "breaks",
    "check_schemas",
    "compatibility",
    "load_schema",
    "machine_devices",
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
                return [Finding("vmschkmachine", None, "machine", detail, ERROR)]
        can = machine_devices(source, machine)
        source = Schema(source.machine, {k: v for k, v in source.devices.items() if k in can})
    renames = known_renames()
    findings: list[Finding] = []
    if source.machine != destination.machine:
        findings.append(
            Finding(
                "vmschkmachine",
                None,
                "machine",
                f"SRC machine {source.machine!r}, DST machine {destination.machine!r}",
                WARNING,
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
            found = Finding(device, None, "device-renamed", f"known as {new!r} in DST: {why}", INFO)
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
        if not breaks(findings):
            detail = f"class gone from DST; class {candidate!r} saves the same vmsd {vmsd.name!r}"
            return [Finding(device, None, "device-renamed", detail, INFO), *findings]
    also = (
        f"; DST classes with vmsd {vmsd.name!r} differ: {', '.join(candidates)}"
        if candidates
        else ""
    )
    return [Finding(device, None, "device-missing", f"no class {device!r} in DST{also}", ERROR)]
