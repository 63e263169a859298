"""A ``-dump-vmstate`` schema's own entries: parsed and checked, before any description exists.

The schema (QEMU-FORMAT.md 4.1) gives per device class its vmsd: field names, versions,
element sizes, ``field_exists`` flags, nested descriptions, subsections and (QEMU >= 8.1)
array lengths.  :func:`parse_entries` reads a file or its JSON object into frozen
:class:`Entry` records, by vmsd and class name, with hostile input bounded by
:data:`miglab.limits.LIMITS`; :func:`with_hints` gives entries without array lengths those of
another build's schema.  The candidate layouts built from an entry are
:mod:`miglab.vmstate.schema_layouts`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from miglab.errors import DescriptionError, LimitExceeded
from miglab.limits import LIMITS

__all__ = ("Entry", "EntryField", "parse_entries", "with_hints")


@dataclass(frozen=True, slots=True)
class EntryField:
    """One field of a schema entry (``Fields``)."""

    name: str
    version_id: int
    exists: bool  # has a field_exists predicate whose value the schema does not give
    size: int
    num: int | None
    desc: Entry | None


@dataclass(frozen=True, slots=True)
class Entry:
    """One schema ``Description`` (a vmsd)."""

    name: str
    version_id: int
    minimum_version_id: int
    fields: tuple[EntryField, ...]
    subsections: tuple[Entry, ...]


def parse_entries(
    schema: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[dict[str, list[Entry]], str | None]:
    """A schema file (path) or its parsed JSON object -> its entries by vmsd and class name,
    and the machine it was dumped for.

    Raises:
        DescriptionError: not JSON, or not the ``-dump-vmstate`` shape.
        LimitExceeded: larger than ``LIMITS.max_schema_bytes`` or nested
            deeper than ``LIMITS.max_depth``.
    """
    if isinstance(schema, str | os.PathLike):
        path = Path(schema)
        try:
            size = path.stat().st_size
            if size > LIMITS.max_schema_bytes:
                raise LimitExceeded(
                    f"schema of {size} bytes exceeds the limit of {LIMITS.max_schema_bytes}",
                    path=str(path),
                )
            raw = path.read_bytes()
        except OSError as exc:
            raise DescriptionError(
                f"cannot read schema: {exc.strerror or exc}", path=str(path)
            ) from None
        try:
            schema = json.loads(raw)
        except RecursionError:
            raise LimitExceeded("schema JSON nested too deeply", path=str(path)) from None
        except ValueError as exc:
            raise DescriptionError(f"schema is not JSON ({exc})", path=str(path)) from None
    if not isinstance(schema, Mapping):
        raise DescriptionError("schema must be a JSON object of device classes")
    entries: dict[str, list[Entry]] = {}
    machine = None
    for key, entry in schema.items():
        if key == "vmschkmachine":
            machine = entry.get("Name") if isinstance(entry, Mapping) else None
            continue
        if not isinstance(entry, Mapping) or not isinstance(entry.get("Description"), Mapping):
            raise DescriptionError(
                f"schema entry {key!r} has no 'Description' object", path=str(key)
            )
        desc = _parse_desc(entry["Description"], str(key), 0)
        cls_name = entry.get("Name")
        names = {desc.name, cls_name} if isinstance(cls_name, str) else {desc.name}
        for name in names:
            known = entries.setdefault(name, [])
            if desc not in known:
                known.append(desc)
    return entries, machine if isinstance(machine, str) else None


def with_hints(
    entries: Mapping[str, list[Entry]], hints: Mapping[str, list[Entry]]
) -> dict[str, list[Entry]]:
    """``entries`` with the array lengths (``num``) ``hints`` give for the same vmsd, field
    name and element size, where the hints agree on one."""
    nums: dict[tuple[str, str, int], set[int]] = {}
    for descs in hints.values():
        for d in descs:
            _collect_nums(d, nums, 0)
    known = {k: next(iter(v)) for k, v in nums.items() if len(v) == 1}
    return {name: [_with_nums(d, known, 0) for d in descs] for name, descs in entries.items()}


def _int(obj: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DescriptionError(
            f"schema {where}: {key!r} must be a non-negative integer, got {value!r}", path=where
        )
    return value


def _parse_desc(obj: Any, where: str, depth: int) -> Entry:
    if depth > LIMITS.max_depth:
        raise LimitExceeded(f"schema nested deeper than {LIMITS.max_depth}", path=where)
    if not isinstance(obj, Mapping):
        raise DescriptionError(f"schema {where}: description must be an object", path=where)
    name = obj.get("name")
    raw_fields = obj.get("Fields", [])
    raw_subs = obj.get("Subsections", [])
    if not isinstance(name, str):
        raise DescriptionError(f"schema {where}: description 'name' must be a string", path=where)
    if not isinstance(raw_fields, list) or not isinstance(raw_subs, list):
        raise DescriptionError(
            f"schema {where}: 'Fields' and 'Subsections' must be lists", path=where
        )
    return Entry(
        name=name,
        version_id=_int(obj, "version_id", where),
        minimum_version_id=_int(obj, "minimum_version_id", where, 0),
        fields=tuple(_parse_field(f, f"{where}.{name}", depth) for f in raw_fields),
        subsections=tuple(_parse_desc(s, f"{where}.{name}", depth + 1) for s in raw_subs),
    )


def _parse_field(obj: Any, where: str, depth: int) -> EntryField:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("field"), str):
        raise DescriptionError(
            f"schema {where}: a field must be an object with a 'field' name", path=where
        )
    name = obj["field"]
    exists = obj.get("field_exists", False)
    if not isinstance(exists, bool):
        raise DescriptionError(
            f"schema {where}.{name}: 'field_exists' must be a boolean", path=where
        )
    num = _int(obj, "num", f"{where}.{name}") if "num" in obj else None
    if num is not None and num > LIMITS.max_array_elements:
        raise LimitExceeded(f"schema {where}.{name}: num {num} exceeds the limit", path=where)
    nested = obj.get("Description")
    return EntryField(
        name=name,
        version_id=_int(obj, "version_id", f"{where}.{name}", 0),
        exists=exists,
        size=_int(obj, "size", f"{where}.{name}", 0),
        num=num,
        desc=_parse_desc(nested, f"{where}.{name}", depth + 1) if nested is not None else None,
    )


def _collect_nums(d: Entry, out: dict[tuple[str, str, int], set[int]], depth: int) -> None:
    for f in d.fields:
        if f.num is not None:
            out.setdefault((d.name, f.name, f.size), set()).add(f.num)
        if f.desc is not None:
            _collect_nums(f.desc, out, depth + 1)
    for sub in d.subsections:
        _collect_nums(sub, out, depth + 1)


def _with_nums(d: Entry, nums: Mapping[tuple[str, str, int], int], depth: int) -> Entry:
    fields = tuple(
        replace(
            f,
            num=f.num if f.num is not None else nums.get((d.name, f.name, f.size)),
            desc=_with_nums(f.desc, nums, depth + 1) if f.desc is not None else None,
        )
        for f in d.fields
    )
    subs = tuple(_with_nums(sub, nums, depth + 1) for sub in d.subsections)
    return replace(d, fields=fields, subsections=subs)
