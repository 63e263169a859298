"""The fleet dataset's layout: its tables, their columns and types, how they are partitioned.

A fleet dataset is a folder with one Apache Parquet dataset per table, each hive-partitioned
by QEMU release and machine type (``streams/release=7.2/machine=pc-q35-7.2/part-....parquet``),
so plain pyarrow (``pyarrow.dataset.dataset(path, partitioning="hive")``), pandas, Dask,
DuckDB or Spark read it without miglab.  ``release`` and ``machine`` come back as columns.

Tables (every one carries ``file``, the stream's absolute path, to join on):

``streams``   one row per file: what it is and whether it could be read (``error`` is ``""``
              when it could, else the error message, which names the byte offset);
``sections``  one row per record (:func:`miglab.analysis.frames.sections_frame`);
``fields``    one row per leaf field of every decoded device section
              (:func:`~miglab.analysis.frames.fields_frame`); ``value`` is the exact value as
              text (integers in decimal, bytes in hex, arrays as JSON), ``number`` the same as
              a float for numeric scalars;
``ram``       one row per RAM block (:func:`~miglab.analysis.frames.ram_frame`): page counts
              and bytes on the wire, never page contents;
``layouts``   one row per distinct vmdesc trailer (``streams.layout`` is its digest), what
              :mod:`miglab.fleet.movable` checks against a destination build's schema.

Files are written in batches: every table's part files of one batch share the basename
``part-<batch>-N.parquet`` and ``streams.batch`` names it, so a batch can be replaced whole.
Values that cannot be named (no configuration block, no manifest entry) are
:data:`UNKNOWN`; a machine name that is not a plain identifier (hostile input) is too.
"""

from __future__ import annotations

import re

import pyarrow as pa

__all__ = ("PARTITIONS", "SCHEMAS", "TABLES", "UNKNOWN", "hive", "partition_value")

#: The value of ``release`` / ``machine`` when the stream does not say.
UNKNOWN = "unknown"

#: Hive partition keys, outermost first.
PARTITIONS = ("release", "machine")

_STR = pa.string()
_I64 = pa.int64()
_I32 = pa.int32()

SCHEMAS: dict[str, pa.Schema] = {
    "streams": pa.schema(
        [
            ("file", _STR),
            ("size", _I64),
            ("mtime_ns", _I64),
            ("container", _STR),
            ("compression", _STR),
            ("capabilities", pa.list_(_STR)),
            ("ram_bytes", _I64),
            ("ram_blocks", _I32),
            ("pages", _I64),
            ("zero_pages", _I64),
            ("passes", _I32),
            ("sections", _I32),
            ("devices", _I32),
            ("opaque_sections", _I32),
            ("vmdesc", pa.bool_()),
            ("layout", _STR),
            ("error", _STR),
            ("error_kind", _STR),
            ("batch", _STR),
            ("release", _STR),
            ("machine", _STR),
        ]
    ),
    "sections": pa.schema(
        [
            ("file", _STR),
            ("kind", _STR),
            ("section_id", _I64),
            ("name", _STR),
            ("device", _STR),
            ("instance_id", _I64),
            ("version_id", _I64),
            ("offset", _I64),
            ("size", _I64),
            ("decoded", pa.bool_()),
            ("release", _STR),
            ("machine", _STR),
        ]
    ),
    "fields": pa.schema(
        [
            ("file", _STR),
            ("section", _STR),
            ("device", _STR),
            ("instance_id", _I64),
            ("path", _STR),
            ("type", _STR),
            ("size", _I64),
            ("value", _STR),
            ("number", pa.float64()),
            ("offset", _I64),
            ("release", _STR),
            ("machine", _STR),
        ]
    ),
    "ram": pa.schema(
        [
            ("file", _STR),
            ("block", _STR),
            ("used_length", _I64),
            ("pages", _I64),
            ("zero_pages", _I64),
            ("data_pages", _I64),
            ("bytes", _I64),
            ("release", _STR),
            ("machine", _STR),
        ]
    ),
    "layouts": pa.schema(
        [("layout", _STR), ("vmdesc", _STR), ("release", _STR), ("machine", _STR)]
    ),
}

#: The tables, in the order a batch writes them (``streams`` last: a batch whose
#: streams rows exist is complete).
TABLES = ("sections", "fields", "ram", "layouts", "streams")

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def partition_value(value: str | None) -> str:
    """``value`` if it is a plain identifier that is safe as a folder name, else UNKNOWN."""
    if value is None or _PLAIN.fullmatch(value) is None:
        return UNKNOWN
    return value


def hive() -> pa.dataset.Partitioning:
    """The datasets' partitioning, for readers: hive, ``release`` and ``machine`` as strings.

    (Left to infer, pyarrow would read a release like ``10`` as an integer.)
    """
    import pyarrow.dataset as pads

    return pads.partitioning(pa.schema([(name, pa.string()) for name in PARTITIONS]), flavor="hive")
