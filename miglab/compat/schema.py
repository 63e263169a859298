"""The ``-dump-vmstate`` schema model: what QEMU says each device class puts on the wire.

``qemu-system-x86_64 -dump-vmstate FILE`` writes, per device class, its vmsd
(``Description``): versions, fields in wire order with sizes and counts, nested
structs and subsections.  :func:`load_schema` parses and validates that file once
into frozen records, which the static check (:mod:`miglab.compat.schema_check`),
the schema-driven step (:mod:`miglab.compat.schema_driven`), the QEMU hop planner
and the fleet queries all read.  A malformed or oversized file is a
:class:`~miglab.errors.DescriptionError` naming where.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miglab.errors import DescriptionError
from miglab.limits import LIMITS

__all__ = ("Schema", "SchemaField", "SchemaSource", "SchemaVmsd", "load_schema")


@dataclass(frozen=True, slots=True)
class SchemaField:
    """One entry of a vmsd's ``Fields`` list."""

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
    """A whole ``-dump-vmstate`` file: the machine and each device class's vmsd."""

    machine: str | None
    devices: Mapping[str, SchemaVmsd]


SchemaSource = str | Path | bytes | Mapping[str, Any] | Schema


def load_schema(source: SchemaSource) -> Schema:
    """Parse and validate a ``-dump-vmstate`` schema.

    Raises:
        DescriptionError: not JSON, not the documented shape, larger than
            ``LIMITS.max_schema_bytes`` or nested deeper than ``LIMITS.max_depth``.
    """
    if isinstance(source, Schema):
        return source
    where = "schema"
    if isinstance(source, str | Path):
        where = str(source)
        with open(source, "rb") as handle:
            source = handle.read(LIMITS.max_schema_bytes + 1)
    if isinstance(source, bytes):
        if len(source) > LIMITS.max_schema_bytes:
            raise DescriptionError(
                f"schema is larger than LIMITS.max_schema_bytes={LIMITS.max_schema_bytes}",
                path=where,
            )
        try:
            source = json.loads(source)
        except (ValueError, RecursionError) as exc:
            raise DescriptionError(f"not a JSON -dump-vmstate schema: {exc}", path=where) from exc
    if not isinstance(source, Mapping):
        raise DescriptionError("expected a JSON object of device classes", path=where)
    machine = source.get("vmschkmachine")
    if machine is not None and not (isinstance(machine, Mapping) and _is_str(machine.get("Name"))):
        raise DescriptionError('expected {"Name": str}', path=f"{where}:vmschkmachine")
    devices: dict[str, SchemaVmsd] = {}
    for name, entry in source.items():
        if name == "vmschkmachine":
            continue
        path = f"{where}:{name}"
        if not isinstance(entry, Mapping) or "Description" not in entry:
            raise DescriptionError("expected a device entry with a Description", path=path)
        devices[str(name)] = _vmsd(entry["Description"], path, 1)
    return Schema(machine["Name"] if machine else None, devices)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _int(obj: Mapping[str, Any], key: str, path: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DescriptionError(f"expected integer {key!r}, got {value!r:.40}", path=path)
    return value


def _list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise DescriptionError(f"expected a list {key!r}", path=path)
    return value


def _vmsd(obj: object, path: str, depth: int) -> SchemaVmsd:
    if depth > LIMITS.max_depth:
        raise DescriptionError(f"nested deeper than LIMITS.max_depth={LIMITS.max_depth}", path=path)
    if not isinstance(obj, Mapping) or not _is_str(obj.get("name")):
        raise DescriptionError('expected a Description object with a "name"', path=path)
    fields = []
    for entry in _list(obj, "Fields", path):
        if not isinstance(entry, Mapping) or not _is_str(entry.get("field")):
            raise DescriptionError('expected a field object with a "field" name', path=path)
        where = f"{path}.{entry['field']}"
        num = entry.get("num")
        if num is not None:
            num = _int(entry, "num", where)
        exists = entry.get("field_exists", False)
        if not isinstance(exists, bool):
            raise DescriptionError("expected boolean 'field_exists'", path=where)
        struct = entry.get("Description")
        fields.append(
            SchemaField(
                entry["field"],
                _int(entry, "version_id", where),
                exists,
                _int(entry, "size", where),
                num,
                None if struct is None else _vmsd(struct, where, depth + 1),
            )
        )
    subsections = tuple(
        _vmsd(s, f"{path}.Subsections", depth + 1) for s in _list(obj, "Subsections", path)
    )
    return SchemaVmsd(
        obj["name"],
        _int(obj, "version_id", path),
        _int(obj, "minimum_version_id", path),
        tuple(fields),
        subsections,
    )
