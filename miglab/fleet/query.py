"""Questions people ask of a fleet dataset, answered with Dask and pandas.

:func:`open_fleet` (``miglab.fleet.open``) gives the tables as lazy Dask dataframes; the
helpers compute small pandas answers from them:

* :func:`check`: which VMs can move to QEMU X (on machine M, or each on its own machine
  type), by the per-stream static check of :mod:`miglab.fleet.movable`;
* :func:`varying_fields`: which fields differ across the fleet, and how much;
* :func:`device_presence`: which devices which streams carry, with the versions seen;
* :func:`size_by_device`: the distribution of section sizes per device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miglab.errors import MiglabError
from miglab.fleet.schema import TABLES, UNKNOWN

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

__all__ = (
    "CHECK_COLUMNS",
    "Fleet",
    "check",
    "device_presence",
    "machine_exists",
    "open_fleet",
    "size_by_device",
    "varying_fields",
)

#: Columns of :func:`check`'s answer.
CHECK_COLUMNS = ("file", "release", "machine", "verdict", "errors", "warnings", "reason")


@dataclass(frozen=True)
class Fleet:
    """The tables of one fleet dataset, as Dask dataframes (``.compute()`` gives pandas).

    Attributes:
        path: the dataset folder.
        streams, sections, fields, ram, layouts: see :mod:`miglab.fleet.schema`.
    """

    path: Path
    streams: dd.DataFrame
    sections: dd.DataFrame
    fields: dd.DataFrame
    ram: dd.DataFrame
    layouts: dd.DataFrame


def open_fleet(path: str | os.PathLike[str]) -> Fleet:
    """Open the dataset ``miglab index`` wrote to ``path``.

    Raises:
        MiglabError: ``path`` holds no ``streams`` table.
    """
    import dask.dataframe as dd

    from miglab.fleet.schema import SCHEMAS, hive

    root = Path(path)
    if not (root / "streams").is_dir():
        raise MiglabError(f"{root} is not a fleet dataset (no streams/ folder)")
    tables: dict[str, Any] = {}
    for name in TABLES:
        folder = root / name
        if folder.is_dir() and any(folder.rglob("*.parquet")):
            tables[name] = dd.read_parquet(
                str(folder),
                engine="pyarrow",
                dataset={"partitioning": hive()},
                dtype_backend="numpy_nullable",  # integer columns with nulls stay integers
            )
        else:  # a fleet whose files all failed has no rows in the other tables
            empty = SCHEMAS[name].empty_table().to_pandas(types_mapper=_nullable)
            tables[name] = dd.from_pandas(empty, npartitions=1)
    return Fleet(root, **tables)


def _nullable(arrow_type: Any) -> Any:
    """pandas' nullable dtype for an arrow type, as ``dtype_backend="numpy_nullable"``."""
    import pandas as pd
    import pyarrow as pa

    return {
        pa.int64(): pd.Int64Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.string(): pd.StringDtype(),
    }.get(arrow_type)


def machine_exists(machine: str, release: str) -> bool:
    """Whether QEMU ``release`` has machine type ``machine`` (``pc-q35-10.0`` not in 7.2).

    Versioned machine types appear with their release and stay; unversioned names are
    taken to exist.
    """
    from miglab.analysis.evolution import machine_key

    family, version = machine_key(machine)
    _, rel = machine_key(release)
    return not version or not family or version <= rel


def check(
    fleet: Fleet,
    to_qemu: str,
    machine: str | None = None,
    *,
    schemas: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Which streams can move to QEMU ``to_qemu`` on ``machine`` (default: each on its own).

    Args:
        fleet: an opened dataset.
        to_qemu: the destination release (``"7.2"``).
        machine: the destination machine type; streams of other machine types are
            ``other-machine``.  None checks each stream on its own machine type, which
            must exist in ``to_qemu`` (else ``other-machine`` too).
        schemas: the folder of ``schema-<release>-<machine>.json`` dumps (default: the
            source checkout's ``data/``).

    Returns:
        One row per stream with :data:`CHECK_COLUMNS`; ``verdict`` is one of
        :data:`miglab.fleet.movable.VERDICTS`.

    Raises:
        MiglabError: ``machine`` does not exist in ``to_qemu``, or no dump of ``to_qemu``.
    """
    import pandas as pd

    from miglab.fleet.movable import find_schema, layout_verdict
    from miglab.vmstate.schema import load_schema

    if schemas is None:
        from miglab.analysis.evolution import DATA_DIR

        schemas = DATA_DIR
    if machine is not None and not machine_exists(machine, to_qemu):
        raise MiglabError(f"QEMU {to_qemu} has no machine type {machine!r}")
    streams = fleet.streams[["file", "release", "machine", "layout", "error"]].compute()
    layouts = fleet.layouts[["layout", "vmdesc"]].drop_duplicates(subset="layout").compute()
    vmdesc = dict(zip(layouts["layout"], layouts["vmdesc"], strict=True))
    dumps: dict[str, Any] = {}
    caches: dict[str, dict[Any, Any]] = {}
    verdicts: dict[tuple[str, str], Any] = {}
    rows = []
    for rec in streams.itertuples(index=False):
        own = str(rec.machine)
        target = machine or own
        base = (str(rec.file), str(rec.release), own)
        if rec.error:
            rows.append((*base, "unreadable", 0, 0, str(rec.error)))
            continue
        if target == UNKNOWN:
            rows.append((*base, "unknown", 0, 0, "the stream names no machine type"))
            continue
        if (machine is not None and own != machine) or not machine_exists(target, to_qemu):
            rows.append((*base, "other-machine", 0, 0, f"machine {own} on QEMU {to_qemu}"))
            continue
        if rec.layout is None or pd.isna(rec.layout) or rec.layout not in vmdesc:
            rows.append((*base, "unknown", 0, 0, "no vmdesc to check"))
            continue
        path = str(find_schema(schemas, to_qemu, target))
        if path not in dumps:
            dumps[path] = load_schema(path)
        key = (path, str(rec.layout))
        if key not in verdicts:
            verdicts[key] = layout_verdict(
                vmdesc[rec.layout], dumps[path], cache=caches.setdefault(path, {})
            )
        v = verdicts[key]
        rows.append((*base, v.verdict, len(v.errors), len(v.warnings), v.reason))
    out = pd.DataFrame(rows, columns=list(CHECK_COLUMNS))
    return out.sort_values("file", ignore_index=True)


def varying_fields(fleet: Fleet, *, min_streams: int = 2) -> pd.DataFrame:
    """Fields whose value differs across the fleet, most varied first.

    Fields are keyed by device (idstr without PCI prefix), instance and member path.

    Returns:
        Columns device, instance_id, path, type, streams (carrying it), values (distinct),
        top (the most common value, cut to 64 characters), top_share (of the streams
        carrying it).
    """
    fields = fleet.fields[["file", "device", "instance_id", "path", "type", "value"]]
    keys = ["device", "instance_id", "path"]
    counts = (
        fields.assign(value=fields["value"].fillna("null"))
        .groupby([*keys, "value"], observed=True)
        .size()
        .rename("n")
        .reset_index()
        .compute()
    )
    types = fields[[*keys, "type"]].drop_duplicates(subset=keys).compute()
    grouped = counts.groupby(keys, observed=True)
    summary = grouped.agg(streams=("n", "sum"), values=("value", "size")).reset_index()
    top = counts.sort_values("n", ascending=False).drop_duplicates(subset=keys)
    summary = summary.merge(top.rename(columns={"value": "top", "n": "top_n"}), on=keys)
    summary = summary.merge(types, on=keys, how="left")
    summary["top_share"] = summary["top_n"] / summary["streams"]
    long = summary["top"].str.len() > 64
    summary.loc[long, "top"] = summary.loc[long, "top"].str.slice(0, 63) + "…"
    varied = summary[(summary["values"] > 1) & (summary["streams"] >= min_streams)]
    cols = ["device", "instance_id", "path", "type", "streams", "values", "top", "top_share"]
    return varied.sort_values(["values", "device", "path"], ascending=[False, True, True])[
        cols
    ].reset_index(drop=True)


def device_presence(fleet: Fleet) -> pd.DataFrame:
    """Which devices the fleet's streams carry: streams per device, versions seen.

    Returns:
        Columns device, streams, share (of the readable streams), versions (sorted
        tuple of the section versions seen), releases (sorted tuple).
    """
    sec = fleet.sections
    sec = sec[sec["kind"].isin(["full", "start"]) & (sec["device"] != "ram")]
    per = sec[["file", "device", "version_id", "release"]].compute()
    readable = int((fleet.streams["error"] == "").sum().compute())
    grouped = per.groupby("device", observed=True)
    out = grouped.agg(
        streams=("file", "nunique"),
        versions=("version_id", lambda v: tuple(sorted({int(x) for x in v.dropna()}))),
        releases=("release", lambda v: tuple(sorted({str(x) for x in v}))),
    ).reset_index()
    out["share"] = out["streams"] / max(readable, 1)
    return out[["device", "streams", "share", "versions", "releases"]].sort_values(
        ["streams", "device"], ascending=[False, True], ignore_index=True
    )


def size_by_device(fleet: Fleet) -> pd.DataFrame:
    """Section bytes per device across the fleet: count, total and quantiles.

    Returns:
        Indexed by device: sections, total, min, median, p90, max (bytes).
    """
    sec = fleet.sections
    sec = sec[sec["kind"] != "command"][["device", "size"]].compute()
    grouped = sec.groupby("device", observed=True)["size"]
    out = grouped.agg(
        sections="count",
        total="sum",
        min="min",
        median="median",
        p90=lambda s: s.quantile(0.9),
        max="max",
    )
    return out.sort_values("total", ascending=False)
