"""Fleet mode: many streams as Parquet datasets, indexed and queried in parallel with Dask.

An operator with thousands of saved VMs, or a CI farm of migration streams, outgrows
loading one stream at a time.  ``miglab index PATHS -o DATASET`` (:func:`index`) reads every
stream into one Apache Parquet dataset per table (:mod:`~miglab.fleet.schema`),
hive-partitioned by QEMU release and machine type, in parallel on Dask's local schedulers or
a ``distributed`` cluster; :func:`open` gives the tables back as Dask dataframes, and the
query helpers answer fleet questions: which VMs can move to QEMU X on machine M
(:func:`check`, the static schema check per stream of :mod:`~miglab.fleet.movable`), which
fields vary (:func:`varying_fields`), which devices appear where (:func:`device_presence`),
how large each device's state is (:func:`size_by_device`).

Modules: :mod:`~miglab.fleet.schema` (tables and partitions), :mod:`~miglab.fleet.rows`
(one file -> rows), :mod:`~miglab.fleet.indexing` (batches on Dask), :mod:`~miglab.fleet.query`,
:mod:`~miglab.fleet.movable`, :mod:`~miglab.fleet.synthetic` (a synthetic fleet from the real
streams).  pyarrow and Dask are imported on first use, not with this package.

Example::

    import miglab.fleet
    miglab.fleet.index(["/srv/vm-saves"], "/srv/fleet", scheduler="processes", workers=2)
    fleet = miglab.fleet.open("/srv/fleet")
    fleet.streams.groupby("release").size().compute()
    miglab.fleet.check(fleet, "7.2", "pc-q35-7.2")
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Fleet": ("miglab.fleet.query", "Fleet"),
    "IndexReport": ("miglab.fleet.indexing", "IndexReport"),
    "check": ("miglab.fleet.query", "check"),
    "device_presence": ("miglab.fleet.query", "device_presence"),
    "index": ("miglab.fleet.indexing", "index"),
    "make_fleet": ("miglab.fleet.synthetic", "make_fleet"),
    "open": ("miglab.fleet.query", "open_fleet"),
    "size_by_device": ("miglab.fleet.query", "size_by_device"),
    "varying_fields": ("miglab.fleet.query", "varying_fields"),
}

__all__ = tuple(sorted(_LAZY))


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(target[0]), target[1])


def __dir__() -> tuple[str, ...]:
    return __all__
