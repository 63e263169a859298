"""How device state evolves across QEMU versions and machine types.

Two sources answer "which devices, fields and subsections appear where, and
from which version":

* real streams (``data/*.mig``): what a QEMU build *sent* for a machine
  type -- section versions, and which optional subsections were needed
  (old machine types switch some off through compat properties);
* ``-dump-vmstate`` schemas: what a QEMU build *can* send, per device class,
  with the ``version_id`` from which each field is on the wire.

Loading many streams takes seconds, so the loaders show a tqdm progress bar
(``progress=False`` turns it off).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from miglab.analysis.schema_tables import (
    SchemaSource,
    read_schema,
    schema_devices_frame,
    schema_frame,
)
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.reader import load
from miglab.vmstate.state import VMState

__all__ = (
    "DATA_DIR",
    "RELEASES",
    "device_name",
    "device_timeline",
    "field_changes",
    "field_timeline",
    "machine_key",
    "manifest_frame",
    "release_schemas",
    "schema_version_matrix",
    "stream_devices_frame",
    "subsection_matrix",
    "version_matrix",
)

#: The shipped reference data (real streams and schemas) of a source checkout.
DATA_DIR = Path(__file__).resolve().parents[2] / "data"

#: The four QEMU releases of issue #8 whose ``-dump-vmstate`` JSONs data/ holds.
RELEASES = ("5.2", "7.2", "10.0", "11.1")

_PCI_PREFIX = re.compile(r"^(?:[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]/)+")


def device_name(idstr: str) -> str:
    """A section idstr without its PCI path prefix (``0000:00:03.0/e1000`` -> ``e1000``)."""
    return _PCI_PREFIX.sub("", idstr)


def machine_key(machine: str) -> tuple[str, tuple[int, ...]]:
    """Sort key for machine types and QEMU versions: family, then version (2.4 < 10.0)."""
    m = re.fullmatch(r"(?:(.*?)-)?(\d+(?:\.\d+)*)", machine)
    if m is None:
        return (machine, ())
    return (m.group(1) or "", tuple(int(x) for x in m.group(2).split(".")))


def manifest_frame(data_dir: str | os.PathLike[str] = DATA_DIR) -> pd.DataFrame:
    """The shipped streams as a table: file, qemu, machine, devices set, guest ran, size.

    The device set is the file name's tag (``net``, ``usb``, ``default``...),
    so 7.2 and 10.0 streams pair up per machine family and set.
    """
    data_dir = Path(data_dir)
    streams = json.loads((data_dir / "manifest.json").read_text())["streams"]
    rows = []
    for s in streams:
        stem = Path(s["file"]).stem
        tag = stem.removeprefix(f"q{s['qemu'].replace('.', '')}-{s['machine']}-")
        ran = tag.endswith("-ran")
        rows.append((s["file"], s["qemu"], s["machine"], tag.removesuffix("-ran"), ran, s["size"]))
    df = pd.DataFrame(rows, columns=["file", "qemu", "machine", "devices", "ran", "size"])
    return df.sort_values(
        ["qemu", "machine", "devices", "ran"],
        key=lambda c: c.map(machine_key) if c.name in ("qemu", "machine") else c,
        ignore_index=True,
    )


def _subsections(state: VMState, prefix: str = "") -> Iterable[str]:
    for name, sub in state.subsections.items():
        yield prefix + name
        yield from _subsections(sub, prefix + name + "/")


def stream_devices_frame(
    streams: Sequence[str | os.PathLike[str] | Stream] | None = None,
    *,
    progress: bool = True,
) -> pd.DataFrame:
    """A row per device section of each stream: what each QEMU build sent.

    Args:
        streams: stream files or loaded streams; default every shipped stream.
        progress: show a tqdm bar while loading.

    Returns:
        Columns file, qemu, machine, device (idstr without PCI prefix), idstr,
        instance_id, version_id, decoded, subsections (tuple of subsection
        names sent; empty when none or undecoded), size.  qemu and machine come
        from the manifest for shipped files (pc <= 2.3 streams have no
        configuration block to name their machine), else from the stream.
    """
    man = manifest_frame()
    info: dict[Any, Any] = man.set_index("file").to_dict("index")
    if streams is None:
        streams = [DATA_DIR / f for f in man["file"]]
    rows = []
    for item in tqdm(streams, desc="loading streams", disable=not progress, leave=False):
        if isinstance(item, Stream):
            stream, file = item, ""
        else:
            stream, file = load(item), Path(item).name
        meta = info.get(file, {})
        machine = meta.get("machine", stream.machine)
        for sec in stream.sections:
            if sec.kind is not SectionKind.FULL:
                continue
            rows.append(_device_row(file, meta.get("qemu"), machine, sec))
    return pd.DataFrame(
        rows,
        columns=[
            "file",
            "qemu",
            "machine",
            "device",
            "idstr",
            "instance_id",
            "version_id",
            "decoded",
            "subsections",
            "size",
        ],
    )


def _device_row(file: str, qemu: str | None, machine: str | None, sec: Section) -> tuple[Any, ...]:
    subs = tuple(_subsections(sec.payload)) if isinstance(sec.payload, VMState) else ()
    return (
        file,
        qemu,
        machine,
        device_name(sec.name),
        sec.name,
        sec.instance_id,
        sec.version_id,
        sec.decoded,
        subs,
        sec.size,
    )


def _column_order(df: pd.DataFrame, columns: Sequence[str]) -> list[Any]:
    keys = df[list(columns)].drop_duplicates()
    keys = keys.sort_values(list(columns), key=lambda c: c.map(machine_key))
    return [tuple(r) if len(columns) > 1 else r[0] for r in keys.itertuples(index=False)]


def version_matrix(
    devices: pd.DataFrame, columns: Sequence[str] = ("machine", "qemu")
) -> pd.DataFrame:
    """Device x (machine, qemu) table of section version_id (<NA>: device not sent).

    Args:
        devices: a :func:`stream_devices_frame`.
        columns: the column key, in sort order; ``("qemu",)`` for one column per build.
    """
    cols = list(columns)
    table = devices.pivot_table(index="device", columns=cols, values="version_id", aggfunc="max")
    table = table.reindex(columns=_column_order(devices, cols)).astype("Int64")
    table.columns.names = cols
    return table


def subsection_matrix(
    devices: pd.DataFrame, columns: Sequence[str] = ("machine", "qemu")
) -> pd.DataFrame:
    """(device, subsection) x (machine, qemu) table of which streams sent which subsection.

    Subsections are optional parts a device sends only when needed; old
    machine types turn some off through compat properties, so this shows
    where a destination that lacks a subsection can still load the stream.
    Cells: True (sent), False (the device was decoded and did not send it),
    <NA> (the device is absent or undecoded, e.g. a stream without vmdesc).
    """
    cols = list(columns)
    order = _column_order(devices, cols)
    exploded = devices[[*cols, "device", "subsections"]].explode("subsections").dropna()
    pairs = sorted(set(zip(exploded["device"], exploded["subsections"], strict=True)))
    sent = {(*pair, *c) for pair, c in _keyed(exploded, cols, ["device", "subsections"])}
    decoded = {(d, *c) for (d,), c in _keyed(devices[devices["decoded"]], cols, ["device"])}
    table = pd.DataFrame(
        [
            [
                True
                if (dev, sub, *_tuple(c)) in sent
                else (False if (dev, *_tuple(c)) in decoded else pd.NA)
                for c in order
            ]
            for dev, sub in pairs
        ],
        index=pd.MultiIndex.from_tuples(pairs, names=["device", "subsection"]),
        columns=pd.MultiIndex.from_tuples(order, names=cols) if len(cols) > 1 else order,
        dtype="boolean",
    )
    if len(cols) == 1:
        table.columns.name = cols[0]
    return table


def _tuple(key: Any) -> tuple[Any, ...]:
    return key if isinstance(key, tuple) else (key,)


def _keyed(
    df: pd.DataFrame, cols: list[str], names: list[str]
) -> Iterable[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    for row in df[[*names, *cols]].itertuples(index=False):
        yield tuple(row[: len(names)]), tuple(row[len(names) :])


def schema_version_matrix(
    schemas: Iterable[SchemaSource], *, progress: bool = False
) -> pd.DataFrame:
    """Device class x QEMU build table of the VMStateDescription version_id.

    Columns are labelled by each schema's machine type (``vmschkmachine``);
    <NA> where a build has no such device class.
    """
    cols = {}
    for src in tqdm(list(schemas), desc="reading schemas", disable=not progress, leave=False):
        schema = read_schema(src)
        cols[schema.machine] = schema_devices_frame(schema).set_index("device")["version_id"]
    table = pd.DataFrame(cols)
    table = table.reindex(columns=sorted(table.columns, key=machine_key)).astype("Int64")
    table.index.name = "device"
    return table


def field_changes(old: SchemaSource, new: SchemaSource) -> pd.DataFrame:
    """Fields that differ between two schemas, per device class.

    A row per change: device, path, change (``added``, ``removed``,
    ``size``, ``version``), old_version, new_version, old_size, new_size,
    and the device's version_id in each schema.  Paths are compared as a
    multiset per device (QEMU repeats names such as ``unused``), so a field
    that only moved is not reported.
    """
    a, b = schema_frame(old), schema_frame(new)
    for df in (a, b):
        df["n"] = df.groupby(["device", "path"]).cumcount()
    key = ["device", "path", "n"]
    m = a.merge(b, on=key, how="outer", suffixes=("_old", "_new"), indicator=True)
    change = pd.Series("", index=m.index)
    change[m["_merge"] == "right_only"] = "added"
    change[m["_merge"] == "left_only"] = "removed"
    both = m["_merge"] == "both"
    change[both & (m["size_old"] != m["size_new"])] = "size"
    change[both & (m["version_id_old"] != m["version_id_new"])] = "version"
    m["change"] = change
    out = m[m["change"] != ""].rename(
        columns={
            "version_id_old": "old_version",
            "version_id_new": "new_version",
            "size_old": "old_size",
            "size_new": "new_size",
        }
    )
    dv_old = schema_devices_frame(old).set_index("device")["version_id"]
    dv_new = schema_devices_frame(new).set_index("device")["version_id"]
    out = out.assign(
        device_old_version=out["device"].map(dv_old).astype("Int64"),
        device_new_version=out["device"].map(dv_new).astype("Int64"),
    )
    cols = [
        "device",
        "path",
        "change",
        "old_version",
        "new_version",
        "old_size",
        "new_size",
        "device_old_version",
        "device_new_version",
    ]
    out = out[cols]
    for c in ("old_version", "new_version", "old_size", "new_size"):
        out[c] = out[c].astype("Int64")
    return out.sort_values(["device", "path"], ignore_index=True)


def release_schemas(
    family: str = "q35", data_dir: str | os.PathLike[str] = DATA_DIR
) -> dict[str, Path]:
    """Release -> the ``-dump-vmstate`` JSON of its newest ``pc-FAMILY`` machine in data/.

    >>> sorted(release_schemas())
    ['10.0', '11.1', '5.2', '7.2']
    """
    root = Path(data_dir)
    return {r: root / f"schema-{r}-pc-{family}-{r}.json" for r in RELEASES}


def device_timeline(schemas: Mapping[str, SchemaSource]) -> pd.DataFrame:
    """Device class x release table of the vmsd version_id (<NA>: the build has no such class).

    ``schemas`` maps a release label to its schema, in the order wanted
    (:func:`release_schemas`).
    """
    table = pd.DataFrame(
        {
            r: schema_devices_frame(src).set_index("device")["version_id"]
            for r, src in schemas.items()
        }
    ).astype("Int64")
    table.index.name = "device"
    table.columns.name = "release"
    return table


def field_timeline(schemas: Mapping[str, SchemaSource], device: str | None = None) -> pd.DataFrame:
    """Per field of a device class, its wire shape in each release, and what changed when.

    A row per (device, path, n) -- ``n`` numbers repeated paths such as
    QEMU's several ``unused`` -- with one column per release (in the order
    of ``schemas``) holding ``"v{version_id} {size}B"`` (the field is sent
    from section version ``version_id`` on, ``size`` bytes), ``""`` where
    the release's class lacks the field, and a ``history`` column
    (``added in 7.2; size 1->5 in 10.0``).  ``device`` keeps one class.
    """
    frames = {}
    for release, src in schemas.items():
        df = schema_frame(src)
        if device is not None:
            df = df[df["device"] == device]
        df = df.assign(n=df.groupby(["device", "path"]).cumcount())
        frames[release] = df.set_index(["device", "path", "n"])[["version_id", "size"]]
    keys = list(dict.fromkeys(k for f in frames.values() for k in f.index))
    out = pd.DataFrame(index=pd.MultiIndex.from_tuples(keys, names=["device", "path", "n"]))
    for release, f in frames.items():
        cell = "v" + f["version_id"].astype(str) + " " + f["size"].astype(str) + "B"
        out[release] = cell[~cell.index.duplicated()].reindex(out.index).fillna("")
    releases = list(frames)
    out["history"] = [_history(releases, row) for row in out[releases].itertuples(index=False)]
    return out


def _history(releases: list[str], cells: Sequence[str]) -> str:
    events = []
    for before, after, release in zip(cells, cells[1:], releases[1:], strict=False):
        if before == after:
            continue
        if not before:
            events.append(f"added in {release}")
        elif not after:
            events.append(f"removed in {release}")
        else:
            (vb, sb), (va, sa) = before.split(), after.split()
            if vb != va:
                events.append(f"version {vb}->{va} in {release}")
            if sb != sa:
                events.append(f"size {sb[:-1]}->{sa[:-1]} in {release}")
    return "; ".join(events)
