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
import marshal
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from miglab.analysis.frames import field_columns, ram_columns, section_columns
from miglab.containers import container_name, load
from miglab.fleet.schema import SCHEMAS, partition_value
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
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
    """One file's rows: its ``streams`` row, its tables (sections, fields, ram) and vmdesc text."""

    stream: dict[str, Any]
    tables: dict[str, pa.Table] = field(default_factory=dict)
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


#: Layout digest -> vmdesc JSON text, per worker process: a fleet repeats few layouts,
#: and encoding a vmdesc as JSON costs more than the rest of a file's rows.
_LAYOUTS: dict[str, str] = {}
_LAYOUTS_MAX = 1024


def _layout(vmdesc: dict[str, Any]) -> tuple[str, str]:
    """(digest, canonical JSON text) of a vmdesc trailer."""
    # marshal version 2 writes no back-references, so equal trees give equal bytes.
    digest = hashlib.blake2b(marshal.dumps(vmdesc, 2), digest_size=10).hexdigest()
    text = _LAYOUTS.get(digest)
    if text is None:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        text = _LAYOUTS[digest] = json.dumps(vmdesc, separators=(",", ":"))
    return digest, text


def _table(name: str, columns: dict[str, Any], constant: dict[str, Any]) -> pa.Table:
    """A table of ``SCHEMAS[name]`` from plain columns and per-file constants."""
    n = len(next(iter(columns.values())))
    arrays = []
    for col in SCHEMAS[name]:
        if col.name in constant:
            arrays.append(pa.repeat(pa.scalar(_utf8(constant[col.name]), type=col.type), n))
            continue
        try:
            arrays.append(pa.array(columns[col.name], type=col.type))
        except UnicodeEncodeError:  # a name read with surrogateescape (non-UTF-8 bytes)
            arrays.append(pa.array([_utf8(x) for x in columns[col.name]], type=col.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMAS[name])


def _utf8(value: Any) -> Any:
    """``value``, with a ``str`` that UTF-8 cannot encode shown with its bytes escaped: idstrs
    and RAM block names keep non-UTF-8 bytes as surrogates (``surrogateescape``), which Arrow
    cannot store (``b"d\\xfc"`` becomes ``"d\\xfc"``)."""
    if not isinstance(value, str):
        return value
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def _compression(container: Any) -> str | None:
    """The compressor of the stream's container, however deep (``gzip``, a libvirt ``xz``)."""
    while container is not None:
        codec = getattr(container, "codec", None)
        if codec is None and hasattr(container, "format"):
            codec = container.format.codec
        if isinstance(codec, str):
            return codec
        container = getattr(container, "inner", None)
    return None


def _tabulate(stream: Stream, out: FileRows) -> None:
    row = out.stream
    if stream.machine is not None:
        row["machine"] = partition_value(stream.machine)
    constant = {"file": row["file"], "release": row["release"], "machine": row["machine"]}
    row["container"] = container_name(stream)
    row["compression"] = _compression(stream.container)
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
        row["layout"], out.vmdesc = _layout(stream.vmdesc)

    sc = section_columns(stream)
    sc["device"] = [device_name(x) for x in sc["name"]]
    out.tables["sections"] = _table("sections", sc, constant)
    fc = field_columns(stream)
    short = {s: device_name(s) for s in set(fc["section"])}
    values = fc["value"]
    fc["device"] = [short[s] for s in fc["section"]]
    fc["value"] = [text_value(v) for v in values]
    fc["number"] = [_number(v) for v in values]
    out.tables["fields"] = _table("fields", fc, constant)
    rc = ram_columns(stream)
    row["pages"] = int(rc["pages"].sum())
    row["zero_pages"] = int(rc["zero_pages"].sum())
    out.tables["ram"] = _table("ram", rc, constant)
