"""pandas tables of ``-dump-vmstate`` schemas: device x field x version_id x size.

A schema (QEMU-FORMAT.md 4.1) lists, per device class, its
VMStateDescription: fields in wire order with the ``version_id`` from which
each is sent, element ``size`` and (QEMU >= ~8.1) ``num``, nested
descriptions and subsections.  Flattening it into one row per leaf field
makes "which fields does e1000 send, and since which version" a filter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from miglab.errors import DescriptionError

__all__ = (
    "SCHEMA_COLUMNS",
    "read_schema",
    "schema_devices_frame",
    "schema_frame",
    "schema_machine",
)

SCHEMA_COLUMNS = (
    "device",
    "vmsd",
    "subsection",
    "path",
    "field",
    "version_id",
    "size",
    "num",
    "field_exists",
)

SchemaSource = str | os.PathLike[str] | Mapping[str, Any]


def read_schema(source: SchemaSource) -> dict[str, Any]:
    """The parsed schema: from a path, or a mapping passed through unchanged.

    Raises:
        DescriptionError: the file is not JSON or lacks ``vmschkmachine``.
    """
    if isinstance(source, Mapping):
        data = dict(source)
        where = "<mapping>"
    else:
        where = os.fspath(source)
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DescriptionError(f"not a -dump-vmstate schema: {exc}", path=where) from exc
    if not isinstance(data, dict) or "vmschkmachine" not in data:
        raise DescriptionError("expected a -dump-vmstate schema with 'vmschkmachine'", path=where)
    return data


def schema_machine(source: SchemaSource) -> str:
    """The machine type a schema was dumped for (``vmschkmachine.Name``)."""
    return str(read_schema(source)["vmschkmachine"]["Name"])


def _fields(
    desc: Mapping[str, Any], prefix: str, subsection: str
) -> Iterator[tuple[str, str, str, str, int, int, int | None, bool]]:
    """Leaf fields of a description, as SCHEMA_COLUMNS without the device."""
    vmsd = str(desc.get("name", ""))
    for f in desc.get("Fields", ()):
        name = str(f["field"])
        path = prefix + name
        nested = f.get("Description")
        if nested is not None:
            yield from _fields(nested, path + ".", subsection)
            continue
        yield (
            vmsd,
            subsection,
            path,
            name,
            int(f.get("version_id", 0)),
            int(f.get("size", 0)),
            f.get("num"),
            bool(f.get("field_exists", False)),
        )
    for sub in desc.get("Subsections", ()):
        yield from _fields(sub, prefix + str(sub.get("name", "")) + ".", str(sub.get("name", "")))


def schema_frame(source: SchemaSource) -> pd.DataFrame:
    """A row per leaf field of every device class in a schema.

    Columns (SCHEMA_COLUMNS): device (qdev class), vmsd (the description the
    field belongs to: the device's own, a nested struct's or a
    subsection's), subsection ('' for the main part), path (dotted through
    nested structs and subsections), field, version_id (sent for stream
    versions >= this), size (element bytes), num (array length or <NA>),
    field_exists (the field has a runtime predicate).

    Example:
        >>> df = schema_frame("data/schema-7.2-pc-q35-7.2.json")
        >>> df[df.device == "e1000"].path.head(2).tolist()
        ['parent_obj.version_id', 'parent_obj.config']
    """
    data = read_schema(source)
    rows = []
    for device, entry in data.items():
        if device == "vmschkmachine":
            continue
        for row in _fields(entry.get("Description", {}), "", ""):
            rows.append((device, *row))
    df = pd.DataFrame(rows, columns=list(SCHEMA_COLUMNS))
    df["num"] = df["num"].astype("Int64")
    return df


def schema_devices_frame(source: SchemaSource) -> pd.DataFrame:
    """A row per device class: version_id, minimum_version_id, fields, subsections, bytes.

    ``bytes`` is the fixed part of the state: sum of size x num over the
    leaf fields (variable-length arrays count one element), a lower bound
    of what the device puts on the wire.
    """
    data = read_schema(source)
    fields = schema_frame(data)
    fields["bytes"] = fields["size"] * fields["num"].fillna(1).astype("int64")
    per = fields.groupby("device").agg(fields=("path", "size"), bytes=("bytes", "sum"))
    rows = []
    for device, entry in data.items():
        if device == "vmschkmachine":
            continue
        desc = entry.get("Description", {})
        rows.append(
            (
                device,
                str(desc.get("name", device)),
                int(entry.get("version_id", 0)),
                int(entry.get("minimum_version_id", 0)),
                len(desc.get("Subsections", ())),
            )
        )
    df = pd.DataFrame(
        rows, columns=["device", "vmsd", "version_id", "minimum_version_id", "subsections"]
    )
    df = df.merge(per, left_on="device", right_index=True, how="left")
    df[["fields", "bytes"]] = df[["fields", "bytes"]].fillna(0).astype("int64")
    return df.sort_values("device", ignore_index=True)
