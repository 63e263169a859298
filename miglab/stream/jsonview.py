"""A readable JSON view of a stream's decoded state (for ``miglab dump`` and notebooks).

This is a view for people, not an encoding: RAM is summarised per block and
buffers are shown as hex.  The lossless JSON encoding is in
:mod:`miglab.encoders`.
"""

from __future__ import annotations

from typing import Any

from miglab.stream.model import CommandRecord, Opaque, Stream
from miglab.stream.ram import RamPayload
from miglab.vmstate.state import VMState

__all__ = ("state_to_jsonable", "stream_to_jsonable")


def state_to_jsonable(state: VMState) -> dict[str, Any]:
    """A VMState as nested JSON-ready dicts (subsections under their names)."""
    out: dict[str, Any] = {k: _value(v) for k, v in state.fields.items()}
    for name, sub in state.subsections.items():
        out[name] = state_to_jsonable(sub)
    return out


def _value(v: Any) -> Any:
    if isinstance(v, VMState):
        return state_to_jsonable(v)
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    return v


def stream_to_jsonable(stream: Stream) -> dict[str, Any]:
    """Machine, configuration, and one entry per record with its decoded payload."""
    records: list[dict[str, Any]] = []
    for rec in stream.records:
        if isinstance(rec, CommandRecord):
            records.append({"command": rec.name, "data": rec.data.hex()})
            continue
        entry: dict[str, Any] = {
            "kind": rec.kind.value,
            "section_id": rec.section_id,
            "name": rec.name,
            "instance_id": rec.instance_id,
            "version_id": rec.version_id,
        }
        p = rec.payload
        if isinstance(p, VMState):
            entry["state"] = state_to_jsonable(p)
        elif isinstance(p, RamPayload):
            entry["ram_records"] = len(p)
            if p.block_list is not None:
                entry["blocks"] = {b.name: b.used_length for b in p.block_list}
        elif isinstance(p, Opaque):
            entry["opaque"] = {"bytes": len(p), "reason": p.reason}
        records.append(entry)
    return {
        "machine": stream.machine,
        "configuration": state_to_jsonable(stream.configuration) if stream.configuration else None,
        "page_size": stream.page_size,
        "records": records,
    }
