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

from miglab.lazy import lazy_attributes

_LAZY = {
    "Fleet": "miglab.fleet.query",
    "IndexReport": "miglab.fleet.indexing",
    "check": "miglab.fleet.query",
    "device_presence": "miglab.fleet.query",
    "index": "miglab.fleet.indexing",
    "make_fleet": "miglab.fleet.synthetic",
    "open": "miglab.fleet.query:open_fleet",
    "size_by_device": "miglab.fleet.query",
    "varying_fields": "miglab.fleet.query",
}

__all__ = tuple(sorted(_LAZY))


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> tuple[str, ...]:
    return __all__
