"""Rebuild vmdesc device entries from device states.

The vmdesc trailer describes the device sections actually written (QEMU-FORMAT.md 1.8), and
miglab's own reader decodes device sections with it.  When a transform renames, adds or drops a
field or subsection, the section's vmdesc entry must change with it, or the stream no longer
reads back.  :func:`vmdesc_entry` writes the entry a :class:`~miglab.vmstate.state.VMState`
implies: field objects in wire order with ``name``, ``array_len`` or ``index`` (arrays read
element by element, and lone ``index`` entries, which the field remembers), ``type``,
``struct`` and ``size`` (bytes written for one element, from the sizing visitor), then the
subsections sent.  For an unedited state read from a stream it reproduces QEMU's entry.
A section of a legacy handler that miglab decodes (``slirp``) gets QEMU's
``vmstate_save_old_style`` entry instead: its size and one ``data`` buffer.
"""

from __future__ import annotations

from typing import Any

from miglab.stream.model import Section, Stream
from miglab.stream.reader import LEGACY_SECTIONS
from miglab.vmstate.description import VMStateDescription, VMStateField
from miglab.vmstate.sizing import wire_size
from miglab.vmstate.state import VMState

__all__ = ("refresh_vmdesc", "vmdesc_entry", "vmdesc_struct")


def vmdesc_entry(section: Section) -> dict[str, Any]:
    """The vmdesc device object for a FULL section with a decoded payload."""
    state = section.payload
    if not isinstance(state, VMState):
        raise TypeError(f"section {section.name!r} has no decoded state")
    if section.name in LEGACY_SECTIONS:
        size = wire_size(state)
        data = {"name": "data", "size": size, "type": "buffer"}
        return {
            "name": section.name,
            "instance_id": section.instance_id,
            "size": size,
            "fields": [data],
        }
    return {"name": section.name, "instance_id": section.instance_id, **vmdesc_struct(state)}


def vmdesc_struct(state: VMState) -> dict[str, Any]:
    """``{vmsd_name, version, fields[, subsections]}`` for one state (device, struct or subsection)."""
    out: dict[str, Any] = {
        "vmsd_name": state.desc.name,
        "version": state.version_id,
        "fields": _fields(state),
    }
    if state.subsections:
        out["subsections"] = [vmdesc_struct(sub) for sub in state.subsections.values()]
    return out


def refresh_vmdesc(stream: Stream, sections: list[Section]) -> None:
    """Replace the vmdesc entries of ``sections`` in ``stream`` (matched by name and instance),
    and its ``configuration`` entry (QEMU >= 9.2 writes one) from the configuration block:
    a machine change alters the name buffer's size."""
    if stream.vmdesc is None:
        return
    if "configuration" in stream.vmdesc and stream.configuration is not None:
        stream.vmdesc["configuration"] = vmdesc_struct(stream.configuration)
    by_key = {(s.name, s.instance_id): s for s in sections}
    devices = stream.vmdesc["devices"]
    for i, dev in enumerate(devices):
        key = (dev.get("name"), dev.get("instance_id"))
        if key in by_key:
            devices[i] = vmdesc_entry(by_key[key])


def _base(name: str) -> str:
    """The vmdesc name of a field: miglab's ``#k`` de-duplication suffix removed."""
    return name.split("#", 1)[0]


def _fields(state: VMState) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in state.desc.fields:
        if f.name not in state.fields:
            continue
        value = state.fields[f.name]
        if f.elements is not None:
            for i, (item, desc) in enumerate(zip(value, f.elements, strict=True)):
                obj: dict[str, Any] = {"name": _base(f.name), "index": i, "type": f.info}
                obj.update(_nested(f, desc, item))
                out.append(obj)
            continue
        obj = {"name": _base(f.name)}
        if f.index is not None:  # a lone vmdesc ``index`` entry, named ``name[index]``
            obj = {"name": obj["name"].removesuffix(f"[{f.index}]"), "index": f.index}
        if f.num is not None or f.num_field is not None:
            obj["array_len"] = len(value)
            one = value[0] if value else None
        else:
            one = value
        obj["type"] = f.info
        if f.kind == "struct":
            assert f.struct is not None
            obj.update(_nested(f, f.struct, one))
        else:
            obj["size"] = _scalar_size(f, one)
        out.append(obj)
    return out


def _nested(f: VMStateField, desc: VMStateDescription, item: Any) -> dict[str, Any]:
    assert isinstance(item, VMState)
    inner = vmdesc_struct(item)
    size = wire_size(item, desc)
    if f.info == "tmp":  # VMSTATE_WITH_TMP: the nested description sits on the field itself
        return {**inner, "size": size}
    return {"struct": inner, "size": size}


def _scalar_size(f: VMStateField, value: Any) -> int:
    if f.kind == "bytes":
        return len(value) if value is not None else f.size
    if f.kind == "str":
        return 1 + len(value.encode() if isinstance(value, str) else value)
    return f.size
