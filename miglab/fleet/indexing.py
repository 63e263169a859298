"""Index many stream files into a fleet dataset, in parallel with Dask.

The work is cut into batches of files; each batch is one Dask task that reads its files
one at a time (:func:`miglab.fleet.rows.file_rows`) and writes one Parquet part file per
table and partition, named after the batch.  Workers write the files themselves, as
``dask.dataframe.to_parquet`` does, so on a cluster the stream files and ``DATASET_DIR``
must be visible to every worker under the same paths (a shared file system).  Memory per
worker is bounded by one batch's rows (:data:`BATCH_FILES` files at most).

``scheduler`` picks where tasks run: Dask's local ``"processes"`` (default),
``"threads"`` or ``"synchronous"`` scheduler, or the address of a ``distributed`` scheduler
(``"tcp://10.0.0.5:8786"``), the same code path for a :class:`distributed.LocalCluster` and
a real cluster.

Re-indexing skips every file whose (path, size, mtime) is already in the ``streams`` table.
A changed or vanished file invalidates its whole batch: the batch's part files are deleted
and its files that still exist are indexed again, so no table ever holds two versions of a
file, nor a file that is gone.  A batch
writes ``streams`` last; part files whose batch has no ``streams`` rows (an interrupted run)
are removed at the start of the next run.
"""

from __future__ import annotations

import os
import resource
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miglab.errors import MiglabError
from miglab.fleet.rows import FileRows, FileStat, file_rows
from miglab.fleet.schema import PARTITIONS, SCHEMAS, TABLES, hive
from miglab.vmstate.layout import paused_gc

if TYPE_CHECKING:
    from miglab.stream.progress import Progress

__all__ = ("BATCH_FILES", "IndexReport", "discover", "index", "index_batch")

#: Most files in one batch (one task): bounds a worker's memory and the progress steps.
BATCH_FILES = 32

LOCAL_SCHEDULERS = ("processes", "threads", "synchronous")

#: What the ``processes`` scheduler's fork server imports once, before it forks the
#: workers: the index code, and pandas, which pyarrow imports on its first conversion of
#: Python values.  Spawned workers imported all of it each (about 1 s of CPU apiece).
_PRELOAD = ("miglab.fleet.rows", "pandas")


@dataclass(frozen=True, slots=True)
class IndexReport:
    """What one ``index`` run did.

    Attributes:
        indexed: files read in this run (errors included).
        errors: of those, files that could not be read (rows with ``error`` set).
        skipped: files left alone because (path, size, mtime) did not change.
        removed: files whose rows were dropped: those that changed or vanished, and the
            others of their batches (which are indexed again).
        seconds: wall time of the run.
        cpu_seconds: CPU time the workers spent on the batches (all workers together).
        peak_rss: the largest resident set size a worker reported, in bytes.
    """

    indexed: int
    errors: int
    skipped: int
    removed: int
    seconds: float
    cpu_seconds: float
    peak_rss: int

    @property
    def rate(self) -> float:
        """Files indexed per second."""
        return self.indexed / self.seconds if self.seconds > 0 else 0.0


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[FileStat]:
    """Every file named, or found under a named folder (sorted; hidden files and
    ``manifest.json`` skipped), with its size and mtime."""
    found: dict[str, FileStat] = {}
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in filenames:
                    if name.startswith(".") or name == "manifest.json":
                        continue
                    full = os.path.join(dirpath, name)
                    if os.path.isfile(full):
                        stat = FileStat.of(full)
                        found[stat.file] = stat
        elif path.is_file():
            stat = FileStat.of(path)
            found[stat.file] = stat
        else:
            raise MiglabError(f"no such file or folder: {os.fspath(p)!r}")
    return [found[k] for k in sorted(found)]


def _merge(rows: list[FileRows], batch: str) -> dict[tuple[str, str, str], Any]:
    """One batch's rows as one arrow table per (table, release, machine)."""
    import pyarrow as pa

    groups: dict[tuple[str, str], list[FileRows]] = {}
    for r in rows:
        groups.setdefault((r.stream["release"], r.stream["machine"]), []).append(r)
    out: dict[tuple[str, str, str], Any] = {}
    for (release, machine), members in groups.items():
        layouts: dict[str, dict[str, Any]] = {}
        for r in members:
            if r.vmdesc is not None:
                layouts.setdefault(
                    r.stream["layout"], {"layout": r.stream["layout"], "vmdesc": r.vmdesc}
                )
        out["streams", release, machine] = pa.Table.from_pylist(
            [{**r.stream, "batch": batch} for r in members], schema=SCHEMAS["streams"]
        )
        out["layouts", release, machine] = pa.Table.from_pylist(
            list(layouts.values()), schema=SCHEMAS["layouts"]
        )
        for table in ("sections", "fields", "ram"):
            parts = [r.tables[table] for r in members if table in r.tables]
            out[table, release, machine] = (
                pa.concat_tables(parts) if parts else SCHEMAS[table].empty_table()
            )
    return out


def _write(dataset: str, table: str, release: str, machine: str, batch: str, data: Any) -> None:
    """Write one part file ``table/release=R/machine=M/part-<batch>-0.parquet``.

    The partition values are plain identifiers (:func:`~miglab.fleet.schema.partition_value`),
    so they need no escaping as folder names; the files leave the partition columns out, as
    hive partitioning does.
    """
    import pyarrow.parquet as pq

    if data.num_rows == 0:
        return
    folder = os.path.join(dataset, table, f"release={release}", f"machine={machine}")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(
        data.drop_columns(list(PARTITIONS)),
        os.path.join(folder, f"part-{batch}-0.parquet"),
        compression="zstd",
    )


def _rss() -> int:
    """Peak resident set size of this process, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def index_batch(
    files: Sequence[FileStat], dataset: str, batch: str, release: str | None = None
) -> dict[str, int]:
    """Index one batch of files into ``dataset`` (the task each worker runs).

    Returns:
        ``{"files": n, "bytes": their size, "errors": e, "cpu_ns": CPU time, "rss": peak
        bytes}`` for the progress and the report.
    """
    cpu = time.thread_time_ns()
    # A stream's tree has no cycles and is freed by reference counting once its rows are
    # made; with the collector on, each file's tree would be scanned once or twice.
    with paused_gc():
        rows = [file_rows(f, release=release) for f in files]
    tables = _merge(rows, batch)
    for name in TABLES:  # streams last: a batch with streams rows is complete
        for (table, rel, machine), data in tables.items():
            if table == name:
                _write(dataset, table, rel, machine, batch, data)
    errors = sum(bool(r.stream["error"]) for r in rows)
    return {
        "files": len(rows),
        "bytes": sum(f.size for f in files),
        "errors": errors,
        "cpu_ns": time.thread_time_ns() - cpu,
        "rss": _rss(),
    }


def _batch_of(filename: str) -> str | None:
    """``part-<batch>-N.parquet`` -> ``<batch>``."""
    if not (filename.startswith("part-") and filename.endswith(".parquet")):
        return None
    return filename[5:-8].rpartition("-")[0] or None


def _part_files(dataset: str) -> dict[str, list[str]]:
    """Batch -> every part file of it, in every table."""
    parts: dict[str, list[str]] = {}
    for table in TABLES:
        for dirpath, _, filenames in os.walk(os.path.join(dataset, table)):
            for name in filenames:
                batch = _batch_of(name)
                if batch is not None:
                    parts.setdefault(batch, []).append(os.path.join(dirpath, name))
    return parts


def _indexed(dataset: str) -> dict[str, tuple[int, int, str]]:
    """file -> (size, mtime_ns, batch) of the streams already in the dataset."""
    root = os.path.join(dataset, "streams")
    if not os.path.isdir(root):
        return {}
    import pyarrow.dataset as pads

    data = pads.dataset(root, format="parquet", partitioning=hive()).to_table(
        columns=["file", "size", "mtime_ns", "batch"]
    )
    return {
        f: (s, m, b)
        for f, s, m, b in zip(
            data["file"].to_pylist(),
            data["size"].to_pylist(),
            data["mtime_ns"].to_pylist(),
            data["batch"].to_pylist(),
            strict=True,
        )
    }


def _batches(files: list[FileStat], workers: int) -> list[list[FileStat]]:
    """Batches small enough that every worker gets several (even progress), at most BATCH_FILES."""
    size = max(1, min(BATCH_FILES, -(-len(files) // (workers * 4))))
    return [files[i : i + size] for i in range(0, len(files), size)]


def index(
    paths: Iterable[str | os.PathLike[str]],
    dataset: str | os.PathLike[str],
    *,
    scheduler: str = "processes",
    workers: int | None = None,
    release: str | None = None,
    progress: Progress | None = None,
) -> IndexReport:
    """Index stream files (or folders of them) into the fleet dataset ``dataset``.

    Args:
        paths: files and folders (walked recursively).
        dataset: the dataset folder (created if missing; an existing one is updated).
        scheduler: ``"processes"``, ``"threads"``, ``"synchronous"`` or a ``distributed``
            scheduler address.
        workers: worker processes/threads of a local scheduler (default: CPU count).
        release: the QEMU release of files no ``manifest.json`` names.
        progress: told ``("indexing", bytes, total)`` as batches of files are done
            (:mod:`miglab.stream.progress`).

    Raises:
        MiglabError: a path does not exist, or the scheduler is unknown.
    """
    start = time.perf_counter()
    if scheduler == "processes":
        _start_fork_server()  # its imports overlap the scan below
    out = os.path.abspath(dataset)
    os.makedirs(out, exist_ok=True)
    files = discover(paths)
    known = _indexed(out)
    parts = _part_files(out)
    complete = {b for _, _, b in known.values()}
    for batch in set(parts) - complete:  # an interrupted run's leftovers
        for f in parts.pop(batch):
            os.remove(f)

    on_disk = {f.file: f for f in files}
    stale_batches = {
        b
        for f, (size, mtime, b) in known.items()
        if (f in on_disk and (on_disk[f].size, on_disk[f].mtime_ns) != (size, mtime))
        or (f not in on_disk and not os.path.exists(f))  # vanished
    }
    removed = 0
    todo = {f.file: f for f in files if f.file not in known}
    for f, (_, _, b) in known.items():
        if b in stale_batches:
            removed += 1
            if f in on_disk:
                todo[f] = on_disk[f]
            elif os.path.isfile(f):
                todo[f] = FileStat.of(f)
    for batch in stale_batches:
        for path in parts.get(batch, []):
            os.remove(path)
    skipped = len(files) - len([f for f in files if f.file in todo])
    work = [todo[k] for k in sorted(todo)]
    totals = {"errors": 0, "cpu_ns": 0, "rss": 0}
    if work:
        totals = _run(work, out, scheduler, workers, release, progress)
    return IndexReport(
        len(work),
        totals["errors"],
        skipped,
        removed,
        time.perf_counter() - start,
        totals["cpu_ns"] / 1e9,
        totals["rss"],
    )


def _start_fork_server() -> bool:
    """Start multiprocessing's fork server with :data:`_PRELOAD` imported, if the platform has one.

    Workers forked from a server that has imported the index code start in milliseconds;
    the server is one single-threaded process, so forking it is safe where forking this
    one (threads of Dask, Arrow or a Jupyter kernel) may not be.  The server lives as long
    as this process; a server already running keeps its own preload.
    """
    import multiprocessing
    import multiprocessing.forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(_PRELOAD))
    multiprocessing.forkserver.ensure_running()
    return True


def _run(
    work: list[FileStat],
    dataset: str,
    scheduler: str,
    workers: int | None,
    release: str | None,
    progress: Progress | None,
) -> dict[str, int]:
    """Run the batches on the chosen scheduler; returns errors, CPU time and peak RSS."""
    import dask

    local = scheduler in LOCAL_SCHEDULERS
    if not local and "://" not in scheduler and ":" not in scheduler:
        raise MiglabError(
            f"unknown scheduler {scheduler!r}: expected one of {', '.join(LOCAL_SCHEDULERS)} "
            "or a distributed scheduler address"
        )
    n = workers or os.cpu_count() or 1
    run = uuid.uuid4().hex[:8]
    batches = _batches(work, n if local else max(n, 8))
    tasks = [
        dask.delayed(index_batch, pure=False)(b, dataset, f"{run}{i:05d}", release)
        for i, b in enumerate(batches)
    ]
    totals = {"errors": 0, "cpu_ns": 0, "rss": 0, "bytes": 0}
    size = sum(f.size for f in work)

    def done(summary: dict[str, int]) -> None:
        totals["errors"] += summary["errors"]
        totals["cpu_ns"] += summary["cpu_ns"]
        totals["rss"] = max(totals["rss"], summary["rss"])
        totals["bytes"] += summary["bytes"]
        if progress is not None:
            progress("indexing", totals["bytes"], size)

    if local:
        with _Progress(done):
            kwargs: dict[str, Any] = {"scheduler": scheduler}
            if scheduler != "synchronous":
                kwargs["num_workers"] = n
            config: dict[str, Any] = {}
            if scheduler == "processes":
                kwargs["chunksize"] = 1  # Dask sends 6 tasks at a time by default
                if _start_fork_server():
                    config["multiprocessing.context"] = "forkserver"
            with dask.config.set(config):
                dask.compute(*tasks, **kwargs)
    else:
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            for future in as_completed(client.compute(tasks)):
                done(future.result())
    return totals


class _Progress:
    """A Dask local-scheduler callback that hands each finished batch's summary on."""

    def __init__(self, done: Callable[[dict[str, int]], None]) -> None:
        from dask.callbacks import Callback

        outer = done

        class _Callback(Callback):
            def _posttask(
                self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any
            ) -> None:
                if isinstance(result, dict) and "files" in result:
                    outer(result)

        self._callback = _Callback()

    def __enter__(self) -> _Progress:
        self._callback.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._callback.__exit__(*exc)
