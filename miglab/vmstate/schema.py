"""The ``-dump-vmstate`` schema model: what QEMU says each device class puts on the wire.

``qemu-system-x86_64 -dump-vmstate FILE`` writes, per device class, its vmsd
(``Description``, QEMU-FORMAT.md 4.1): versions, fields in wire order with element sizes,
``field_exists`` flags and (QEMU >= 8.1) array lengths, nested structs and subsections, but
no type names and no predicates' values.  :func:`load_schema` parses and validates that
file once into frozen records that every user reads: the decoder
(:mod:`miglab.vmstate.from_schema`), ``check-schemas`` (:mod:`miglab.compat.schema_check`),
the schema-driven step, the QEMU hop planner, the fleet queries and the analysis tables.
:func:`with_hints` gives a schema without array lengths those of another build's.

Hostile input is bounded by :data:`miglab.limits.LIMITS` (``max_schema_bytes``,
``max_depth``, ``max_array_elements``); a malformed file is a
:class:`~miglab.errors.DescriptionError` naming where (``FILE:device.field``), an oversized
one a :class:`~miglab.errors.DescriptionLimitExceeded`.

    >>> schema = load_schema("data/schema-7.2-pc-q35-7.2.json")
    >>> schema.machine, schema.devices["mc146818rtc"].fields[0].name
    ('pc-q35-7.2', 'cmos_data')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from miglab.errors import DescriptionError, DescriptionLimitExceeded
from miglab.limits import LIMITS

__all__ = (
    "MACHINE_KEY",
    "Schema",
    "SchemaField",
    "SchemaSource",
    "SchemaVmsd",
    "load_schema",
    "with_hints",
)

#: The key of a schema's machine entry (``{"Name": "pc-q35-7.2"}``), not a device class.
MACHINE_KEY = "vmschkmachine"


@dataclass(frozen=True, slots=True)
class SchemaField:
    """One entry of a vmsd's ``Fields`` list.

    Attributes:
        name: the field's name (``field``).
        version_id: sent in stream versions >= this (0 when the schema omits it).
        exists: has a ``field_exists`` predicate, whose value the schema does not give.
        size: element size in bytes (0 when the schema omits it).
        num: array length, when the schema gives it (QEMU >= 8.1).
        struct: the nested vmsd of a struct field.
    """

    name: str
    version_id: int
    exists: bool
    size: int
    num: int | None
    struct: SchemaVmsd | None


@dataclass(frozen=True, slots=True)
class SchemaVmsd:
    """One ``Description`` (a vmsd): versions, fields in wire order, subsections."""

    name: str
    version_id: int
    minimum_version_id: int
    fields: tuple[SchemaField, ...]
    subsections: tuple[SchemaVmsd, ...]


@dataclass(frozen=True, slots=True)
class Schema:
    """A whole ``-dump-vmstate`` file: the machine and each device class's vmsd.

    Attributes:
        machine: the machine type it was dumped for (``vmschkmachine``), if given.
        devices: device class name (the file's key) -> its vmsd, in file order.
    """

    machine: str | None
    devices: Mapping[str, SchemaVmsd]


SchemaSource = str | os.PathLike[str] | bytes | Mapping[str, Any] | Schema


def load_schema(source: SchemaSource) -> Schema:
    """Parse and validate a ``-dump-vmstate`` schema: a path, its bytes or its parsed JSON.

    A :class:`Schema` passes through unchanged.

    Raises:
        DescriptionError: unreadable, not JSON or not the documented shape.
        DescriptionLimitExceeded: larger than ``LIMITS.max_schema_bytes``, nested deeper
            than ``LIMITS.max_depth`` or an array longer than ``LIMITS.max_array_elements``.
    """
    if isinstance(source, Schema):
        return source
    where = "schema"
    if isinstance(source, str | os.PathLike):
        where = os.fspath(source)
        try:
            with open(source, "rb") as handle:
                source = handle.read(LIMITS.max_schema_bytes + 1)
        except OSError as exc:
            raise DescriptionError(
                f"cannot read schema: {exc.strerror or exc}", path=where
            ) from None
    if isinstance(source, bytes):
        if len(source) > LIMITS.max_schema_bytes:
            raise DescriptionLimitExceeded(
                f"schema is larger than LIMITS.max_schema_bytes={LIMITS.max_schema_bytes}",
                path=where,
            )
        try:
            source = json.loads(source)
        except RecursionError:
            raise DescriptionLimitExceeded("schema JSON nested too deeply", path=where) from None
        except ValueError as exc:
            raise DescriptionError(f"not a JSON -dump-vmstate schema: {exc}", path=where) from None
    if not isinstance(source, Mapping):
        raise DescriptionError("expected a JSON object of device classes", path=where)
    machine = source.get(MACHINE_KEY)
    if machine is not None and not (
        isinstance(machine, Mapping) and isinstance(machine.get("Name"), str)
    ):
        raise DescriptionError('expected {"Name": str}', path=f"{where}:{MACHINE_KEY}")
    devices: dict[str, SchemaVmsd] = {}
    for name, entry in source.items():
        if name == MACHINE_KEY:
            continue
        path = f"{where}:{name}"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("Description"), Mapping):
            raise DescriptionError("expected a device entry with a Description object", path=path)
        devices[str(name)] = _vmsd(entry["Description"], path, 0)
    return Schema(machine["Name"] if machine is not None else None, devices)


def with_hints(schema: Schema, hints: Schema) -> Schema:
    """``schema`` with the array lengths (``num``) ``hints`` give for the same vmsd, field
    name and element size, where the hints agree on one.

    A schema of QEMU < 8.1 gives no array lengths; one of a newer build mostly has the
    same arrays, so its lengths are good first guesses for the decoder.
    """
    nums: dict[tuple[str, str, int], set[int]] = {}
    for vmsd in hints.devices.values():
        _collect_nums(vmsd, nums)
    known = {k: next(iter(v)) for k, v in nums.items() if len(v) == 1}
    devices = {name: _with_nums(vmsd, known) for name, vmsd in schema.devices.items()}
    return Schema(schema.machine, devices)


def _int(obj: Mapping[str, Any], key: str, path: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DescriptionError(
            f"expected a non-negative integer {key!r}, got {value!r:.40}", path=path
        )
    return value


def _list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise DescriptionError(f"expected a list {key!r}", path=path)
    return value


def _vmsd(obj: object, path: str, depth: int) -> SchemaVmsd:
    if depth > LIMITS.max_depth:
        raise DescriptionLimitExceeded(
            f"nested deeper than LIMITS.max_depth={LIMITS.max_depth}", path=path
        )
    if not isinstance(obj, Mapping) or not isinstance(obj.get("name"), str):
        raise DescriptionError('expected a Description object with a "name"', path=path)
    fields = tuple(_field(f, path, depth) for f in _list(obj, "Fields", path))
    subsections = tuple(
        _vmsd(s, f"{path}.Subsections", depth + 1) for s in _list(obj, "Subsections", path)
    )
    return SchemaVmsd(
        obj["name"],
        _int(obj, "version_id", path),
        _int(obj, "minimum_version_id", path, 0),
        fields,
        subsections,
    )


def _field(obj: object, path: str, depth: int) -> SchemaField:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("field"), str):
        raise DescriptionError('expected a field object with a "field" name', path=path)
    where = f"{path}.{obj['field']}"
    exists = obj.get("field_exists", False)
    if not isinstance(exists, bool):
        raise DescriptionError("expected boolean 'field_exists'", path=where)
    num = _int(obj, "num", where) if obj.get("num") is not None else None
    if num is not None and num > LIMITS.max_array_elements:
        raise DescriptionLimitExceeded(
            f"num {num} exceeds LIMITS.max_array_elements={LIMITS.max_array_elements}",
            path=where,
        )
    struct = obj.get("Description")
    return SchemaField(
        obj["field"],
        _int(obj, "version_id", where, 0),
        exists,
        _int(obj, "size", where, 0),
        num,
        None if struct is None else _vmsd(struct, where, depth + 1),
    )


def _collect_nums(vmsd: SchemaVmsd, out: dict[tuple[str, str, int], set[int]]) -> None:
    for f in vmsd.fields:
        if f.num is not None:
            out.setdefault((vmsd.name, f.name, f.size), set()).add(f.num)
        if f.struct is not None:
            _collect_nums(f.struct, out)
    for sub in vmsd.subsections:
        _collect_nums(sub, out)


def _with_nums(vmsd: SchemaVmsd, nums: Mapping[tuple[str, str, int], int]) -> SchemaVmsd:
    fields = tuple(
        replace(
            f,
            num=f.num if f.num is not None else nums.get((vmsd.name, f.name, f.size)),
            struct=_with_nums(f.struct, nums) if f.struct is not None else None,
        )
        for f in vmsd.fields
    )
    subsections = tuple(_with_nums(sub, nums) for sub in vmsd.subsections)
    return replace(vmsd, fields=fields, subsections=subsections)
