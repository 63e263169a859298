"""One stream file -> its rows in every fleet table (see :mod:`miglab.fleet.schema`).

A stream does not say which QEMU release wrote it (device versions change too rarely to
tell), so the release comes from a ``manifest.json`` beside the file, in the shape
``data/manifest.json`` has (``{"streams": [{"file", "qemu", "machine"}, ...]}``), or from
the caller (``release=``), else it is :data:`~miglab.fleet.schema.UNKNOWN`.  The machine
comes from the stream's configuration block, else from the manifest (``pc`` <= 2.3 streams
have no configuration block).

Bad or hostile files never raise here: any failure to read or tabulate a file becomes its
``streams`` row with ``error`` set (and no rows in the other tables).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from miglab.analysis.frames import fields_frame, ram_frame, sections_frame
from miglab.fleet.schema import partition_value
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.reader import load
from miglab.vmstate.state import VMState

__all__ = ("FileRows", "FileStat", "device_name", "file_rows", "text_value")


@dataclass(frozen=True, slots=True)
class FileStat:
    """What decides whether a file must be indexed again: its path, size and mtime."""

    file: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileStat:
        """The stat of ``path`` (made absolute)."""
        p = os.path.abspath(path)
        st = os.stat(p)
        return cls(p, st.st_size, st.st_mtime_ns)


@dataclass(slots=True)
class FileRows:
    """One file's rows: a dict of column lists per table (``streams`` has exactly one row)."""

    stream: dict[str, Any]
    tables: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    vmdesc: str | None = None


@lru_cache(maxsize=256)
def _manifest(folder: str) -> dict[str, tuple[str | None, str | None]]:
    """``file name -> (qemu release, machine)`` from ``folder/manifest.json``, if any."""
    try:
        with open(os.path.join(folder, "manifest.json"), "rb") as fh:
            data = json.loads(fh.read(8 << 20))
        entries = data["streams"]
        return {
            str(e["file"]): (
                str(e["qemu"]) if e.get("qemu") is not None else None,
                str(e["machine"]) if e.get("machine") is not None else None,
            )
            for e in entries
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def device_name(idstr: str) -> str:
    """A section idstr without its device path (``0000:00:02.0/0:0:0/scsi-disk`` -> ``scsi-disk``)."""
    return idstr.rpartition("/")[2]


def text_value(value: Any) -> str | None:
    """A field value as exact text: decimal ints, ``true``/``false``, hex bytes, JSON arrays."""
    kind = type(value)
    if kind is int or kind is str:
        return str(value)
    if value is None:
        return None
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        return repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if kind is list:
        try:
            return json.dumps(value)  # ints, floats, bools, strings
        except TypeError:  # arrays of buffers
            return json.dumps([text_value(v) for v in value])
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    return None


def _passes(stream: Stream) -> int:
    """The most times one page was sent (1 for a single pass, 0 without RAM records)."""
    keys = []
    for rec in stream.records:
        if isinstance(rec, Section) and isinstance(rec.payload, RamPayload):
            p = rec.payload
            mask = p.block >= 0
            if mask.any():
                keys.append((p.block[mask].astype(np.uint64) << np.uint64(48)) | p.offsets[mask])
    if not keys:
        return 0
    _, counts = np.unique(np.concatenate(keys), return_counts=True)
    return int(counts.max())


def _capabilities(stream: Stream) -> list[str]:
    cfg = stream.configuration
    caps = cfg.subsections.get("configuration/capabilities") if cfg is not None else None
    if caps is None:
        return []
    return sorted(str(c.fields["capability"]) for c in caps.fields["capabilities"])


def _columns(frame: Any, names: Iterable[str]) -> dict[str, list[Any]]:
    """Plain Python lists of some columns (pandas NA as None, which pyarrow takes as null)."""
    return {n: frame[n].to_numpy(dtype=object, na_value=None).tolist() for n in names}


def file_rows(stat: FileStat, *, release: str | None = None) -> FileRows:
    """Read one stream file and tabulate it; failures become the ``error`` of its row."""
    folder, name = os.path.split(stat.file)
    book_release, book_machine = _manifest(folder).get(name, (None, None))
    row: dict[str, Any] = {
        "file": stat.file,
        "size": stat.size,
        "mtime_ns": stat.mtime_ns,
        "container": None,
        "compression": None,
        "capabilities": [],
        "ram_bytes": None,
        "ram_blocks": None,
        "pages": None,
        "zero_pages": None,
        "passes": None,
        "sections": None,
        "devices": None,
        "opaque_sections": None,
        "vmdesc": None,
        "layout": None,
        "error": "",
        "error_kind": "",
        "release": partition_value(book_release or release),
        "machine": partition_value(book_machine),
    }
    out = FileRows(row)
    try:
        stream = load(stat.file)
        _tabulate(stream, out)
    except Exception as exc:  # a bad file is a row, never a crashed run
        row["error"] = str(exc) or exc.__class__.__name__
        row["error_kind"] = exc.__class__.__name__
        out.tables = {}
        out.vmdesc = None
    return out


def _tabulate(stream: Stream, out: FileRows) -> None:
    row = out.stream
    if stream.machine is not None:
        row["machine"] = partition_value(stream.machine)
    part = {"release": row["release"], "machine": row["machine"]}
    file = row["file"]
    row["container"] = getattr(stream, "container", "bare")
    row["compression"] = getattr(stream, "compression", None)
    row["capabilities"] = _capabilities(stream)
    blocks = stream.ram.blocks
    row["ram_bytes"] = sum(b.used_length for b in blocks)
    row["ram_blocks"] = len(blocks)
    row["passes"] = _passes(stream)
    sections = [r for r in stream.records if isinstance(r, Section)]
    row["sections"] = len(sections)
    row["devices"] = sum(
        isinstance(s.payload, VMState) and s.kind in (SectionKind.FULL, SectionKind.START)
        for s in sections
    )
    row["opaque_sections"] = sum(not s.decoded for s in sections)
    row["vmdesc"] = stream.vmdesc is not None
    if stream.vmdesc is not None:
        text = json.dumps(stream.vmdesc, sort_keys=True, separators=(",", ":"))
        row["layout"] = hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
        out.vmdesc = text

    sf = sections_frame(stream)
    n = len(sf)
    names = sf["name"].tolist()
    cols = _columns(sf, ("kind", "section_id", "instance_id", "version_id", "offset", "size"))
    out.tables["sections"] = {
        "file": [file] * n,
        "kind": cols["kind"],
        "section_id": cols["section_id"],
        "name": names,
        "device": [device_name(x) for x in names],
        "instance_id": cols["instance_id"],
        "version_id": cols["version_id"],
        "offset": cols["offset"],
        "size": cols["size"],
        "decoded": sf["decoded"].tolist(),
        **{k: [v] * n for k, v in part.items()},
    }
    ff = fields_frame(stream)
    n = len(ff)
    values = ff["value"].tolist()
    section = ff["section"].tolist()
    short = {s: device_name(s) for s in set(section)}
    out.tables["fields"] = {
        "file": [file] * n,
        "section": section,
        "device": [short[s] for s in section],
        **_columns(ff, ("instance_id", "path", "type", "size")),
        "value": [text_value(v) for v in values],
        "number": [_number(v) for v in values],
        "offset": ff["offset"].tolist(),
        **{k: [v] * n for k, v in part.items()},
    }
    rf = ram_frame(stream)
    n = len(rf)
    row["pages"] = int(rf["pages"].sum())
    row["zero_pages"] = int(rf["zero_pages"].sum())
    out.tables["ram"] = {
        "file": [file] * n,
        "block": rf["block"].tolist(),
        **_columns(rf, ("used_length", "pages", "zero_pages", "data_pages", "bytes")),
        **{k: [v] * n for k, v in part.items()},
    }



