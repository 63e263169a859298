"""pandas tables of ``-dump-vmstate`` schemas: device x field x version_id x size.

A schema (QEMU-FORMAT.md 4.1) lists, per device class, its
VMStateDescription: fields in wire order with the ``version_id`` from which
each is sent, element ``size`` and (QEMU >= ~8.1) ``num``, nested
descriptions and subsections.  Flattening it into one row per leaf field
makes "which fields does e1000 send, and since which version" a filter.
The tables read the one schema model (:mod:`miglab.vmstate.schema`), so a
schema parsed once (:func:`read_schema`) can feed every table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd

from miglab.errors import DescriptionError
from miglab.vmstate.schema import MACHINE_KEY, Schema, SchemaSource, SchemaVmsd, load_schema

__all__ = (
    "SCHEMA_COLUMNS",
    "SchemaSource",
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


def read_schema(source: SchemaSource) -> Schema:
    """The parsed schema (:func:`~miglab.vmstate.schema.load_schema`), which must name
    its machine; a :class:`~miglab.vmstate.schema.Schema` passes through unchanged.

    Raises:
        DescriptionError: the file is not a schema or lacks ``vmschkmachine``.
    """
    schema = load_schema(source)
    if schema.machine is None:
        where = os.fspath(source) if isinstance(source, str | os.PathLike) else "schema"
        raise DescriptionError(f"expected a -dump-vmstate schema with {MACHINE_KEY!r}", path=where)
    return schema


def schema_machine(source: SchemaSource) -> str:
    """The machine type a schema was dumped for (``vmschkmachine.Name``)."""
    machine = read_schema(source).machine
    assert machine is not None  # read_schema checked it
    return machine


def _fields(
    vmsd: SchemaVmsd, prefix: str, subsection: str
) -> Iterator[tuple[str, str, str, str, int, int, int | None, bool]]:
    """Leaf fields of a description, as SCHEMA_COLUMNS without the device."""
    for f in vmsd.fields:
        path = prefix + f.name
        if f.struct is not None:
            yield from _fields(f.struct, path + ".", subsection)
            continue
        yield (vmsd.name, subsection, path, f.name, f.version_id, f.size, f.num, f.exists)
    for sub in vmsd.subsections:
        yield from _fields(sub, prefix + sub.name + ".", sub.name)


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
    schema = read_schema(source)
    rows = [
        (device, *row) for device, vmsd in schema.devices.items() for row in _fields(vmsd, "", "")
    ]
    df = pd.DataFrame(rows, columns=list(SCHEMA_COLUMNS))
    df["num"] = df["num"].astype("Int64")
    return df


def schema_devices_frame(source: SchemaSource) -> pd.DataFrame:
    """A row per device class: version_id, minimum_version_id, fields, subsections, bytes.

    ``bytes`` is the fixed part of the state: sum of size x num over the
    leaf fields (variable-length arrays count one element), a lower bound
    of what the device puts on the wire.
    """
    schema = read_schema(source)
    fields = schema_frame(schema)
    fields["bytes"] = fields["size"] * fields["num"].fillna(1).astype("int64")
    per = fields.groupby("device").agg(fields=("path", "size"), bytes=("bytes", "sum"))
    # QEMU writes a class's vmsd versions twice, beside and in its Description: the same.
    rows = [
        (device, v.name, v.version_id, v.minimum_version_id, len(v.subsections))
        for device, v in schema.devices.items()
    ]
    df = pd.DataFrame(
        rows, columns=["device", "vmsd", "version_id", "minimum_version_id", "subsections"]
    )
    df = df.merge(per, left_on="device", right_index=True, how="left")
    df[["fields", "bytes"]] = df[["fields", "bytes"]].fillna(0).astype("int64")
    return df.sort_values("device", ignore_index=True)
