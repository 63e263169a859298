"""How the proxy decodes device sections without the vmdesc: the source build's own descriptions.

A live stream sends its vmdesc last, after the device state the destination needs first,
and old machine types (pc-i440fx <= 2.2) send none at all.  So device sections are decoded
from what is known about the *source build*, kept as data in ``data/``:

* ``vmdesc-<qemu>.json``: the vmdesc device entries of test migrations of that build (made
  once per build by ``scripts/harvest-vmdesc.py``), by section idstr.  They describe what
  ``-dump-vmstate`` does not: the CPU, timers, APIC, legacy sections, and the exact field
  types and subsections the build writes;
* ``schema-<qemu>-<machine>.json``: the build's ``-dump-vmstate``, decoding by trial what
  the harvest lacks (:class:`~miglab.vmstate.from_schema.SchemaIndex`).

A harvested description is used only where its decode ends exactly at the section's end
(the footer, or the next record without footers); otherwise the schema is tried, and what
neither fits stays an opaque span -- forwarded as it came, never guessed.

The proxy decodes while the guest is stopped, so what the first decode of a section would
build is built before (:func:`prepare_decoding`, at the start of the stream): the compiled
layouts of the harvested descriptions, and the model of the legacy ``slirp`` section.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from miglab.errors import DescriptionError, MiglabError
from miglab.limits import LIMITS
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.from_schema import SchemaIndex
from miglab.vmstate.from_vmdesc import description_from_vmdesc
from miglab.vmstate.layout import layout

__all__ = (
    "SourceDecoding",
    "data_dir",
    "harvested_descriptions",
    "prepare_decoding",
    "source_decoding",
)


def data_dir() -> Path:
    """The reference data folder: ``$MIGLAB_DATA``, else the checkout's ``data/``."""
    env = os.environ.get("MIGLAB_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True, slots=True)
class SourceDecoding:
    """What decodes the device sections of one source build's stream.

    Attributes:
        qemu: the source build.
        schema: its ``-dump-vmstate`` (None when there is none).
        descriptions: section idstr (and its last ``/`` part) -> harvested descriptions,
            tried in order.
    """

    qemu: str
    schema: SchemaIndex | None
    descriptions: Mapping[str, Sequence[VMStateDescription]]


def harvested_descriptions(
    source: str | os.PathLike[str] | Mapping[str, Any],
) -> dict[str, tuple[VMStateDescription, ...]]:
    """The descriptions of a ``vmdesc-<qemu>.json`` harvest (a path or its parsed JSON).

    Raises:
        DescriptionError: the file is not a harvest, or an entry is not a vmdesc device.
    """
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source)
        if path.stat().st_size > LIMITS.max_schema_bytes:
            raise DescriptionError(f"{path} exceeds max_schema_bytes")
        data = json.loads(path.read_text())
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, dict):
        raise DescriptionError("a vmdesc harvest is an object with a 'devices' object")
    cache_: dict[Any, VMStateDescription] = {}
    out: dict[str, list[VMStateDescription]] = {}
    for idstr, entries in devices.items():
        if not isinstance(entries, list):
            raise DescriptionError(f"harvest entry {idstr!r} is not a list", path=idstr)
        for entry in entries:
            desc = description_from_vmdesc(entry, 0, cache_)
            for key in dict.fromkeys((idstr, idstr.rsplit("/", 1)[-1])):
                known = out.setdefault(key, [])
                if desc not in known:
                    known.append(desc)
    return {k: tuple(v) for k, v in out.items()}


@cache
def source_decoding(qemu: str, machine: str | None = None) -> SourceDecoding:
    """The harvest and schema of build ``qemu`` from :func:`data_dir` (parsed once).

    Args:
        qemu: the source build (``"10.0"``).
        machine: any machine of the stream's family (``pc-q35-...``), to pick the schema of
            that family (default: q35).

    Raises:
        MiglabError: neither a harvest nor a schema of the build is in the data folder.
    """
    root = data_dir()
    family = "pc-i440fx" if machine and "i440fx" in machine else "pc-q35"
    schema_path = root / f"schema-{qemu}-{family}-{qemu}.json"
    harvest_path = root / f"vmdesc-{qemu}.json"
    if not schema_path.is_file() and not harvest_path.is_file():
        raise MiglabError(
            f"no descriptions of QEMU {qemu} in {root} (expected {harvest_path.name} "
            f"or {schema_path.name})"
        )
    schema = SchemaIndex.load(schema_path) if schema_path.is_file() else None
    harvest = harvested_descriptions(harvest_path) if harvest_path.is_file() else {}
    return SourceDecoding(qemu, schema, harvest)


def prepare_decoding(descriptions: Mapping[str, Sequence[VMStateDescription]]) -> None:
    """Build now what decoding with ``descriptions`` builds on first use, so that the decodes
    while the guest is stopped find it built: the layout of every description and of the
    structs and subsections in it, at the version the walk reads it (its own; compiled once
    per description and cached by :func:`~miglab.vmstate.layout.layout`: ~4 ms for QEMU
    10.0's 233), and the model of the legacy ``slirp`` section (its module: ~1 ms to import).
    """
    import miglab.devices.slirp  # noqa: F401  (the stream reader imports it on first use)

    seen: set[int] = set()
    todo = [d for ds in descriptions.values() for d in ds]
    while todo:
        desc = todo.pop()
        if id(desc) in seen:
            continue
        seen.add(id(desc))
        layout(desc, desc.version_id)
        for f in desc.fields:
            if f.struct is not None:
                todo.append(f.struct)
            todo.extend(f.elements or ())
        todo.extend(desc.subsections)
