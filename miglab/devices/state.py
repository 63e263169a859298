"""Hand-built descriptions meet device values: build a VMState, check it.

A :class:`~miglab.vmstate.state.VMState` says which subsections it carries;
QEMU decides that on the output side with each subsection's ``needed``
function.  :func:`state_from_values` does the same from a device object
or a mapping, so a hand-written description (QEMU's ``VMStateDescription``)
plus device values gives the state the walker writes.

:func:`check_state` is the destination's side of QEMU's checked types:
``*_equal`` fields must equal the destination's current value and
``int32 le`` fields must lie in ``[0, current]`` (``get_int32_le``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from miglab.errors import VisitorError
from miglab.vmstate.description import VMStateDescription, VMStateField
from miglab.vmstate.state import VMState

__all__ = ("check_state", "state_from_values")

_MISSING = object()


def _get(values: Any, name: str) -> Any:
    if isinstance(values, VMState):
        return values.fields.get(name, _MISSING)
    if isinstance(values, Mapping):
        return values.get(name, _MISSING)
    return getattr(values, name, _MISSING)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def state_from_values(
    desc: VMStateDescription,
    values: Any,
    version_id: int | None = None,
    path: str = "",
) -> VMState:
    """Build the state ``desc`` sends for ``values`` at ``version_id``.

    Args:
        desc: the description; its subsections' ``needed`` predicates (called
            with the values gathered for the parent) decide which are sent; a
            subsection without one is always sent, as in QEMU.
        values: a mapping, an object with attributes (a device model) or a
            VMState.  A subsection takes its members from the same values,
            since QEMU's subsections describe the same C struct.
        version_id: the version to build for (default ``desc.version_id``):
            fields newer than it, or whose ``exists`` predicate says no, are left out.
        path: member path of ``values`` for error messages.

    Raises:
        VisitorError: a member the description needs is missing.
    """
    version = desc.version_id if version_id is None else version_id
    fields: dict[str, Any] = {}
    for f in desc.fields:
        if f.version_id > version or (f.exists is not None and not f.exists(fields, version)):
            continue
        value = _get(values, f.name)
        if value is _MISSING:
            raise VisitorError("is missing", path=_join(path, f.name))
        fields[f.name] = _member(f, value, _join(path, f.name))
    subsections: dict[str, VMState] = {}
    for sd in desc.subsections:
        if sd.needed is None or sd.needed(fields | _as_dict(values)):
            subsections[sd.name] = state_from_values(sd, values, None, _join(path, sd.name))
    return VMState(desc, version, fields, subsections)


def _as_dict(values: Any) -> dict[str, Any]:
    if isinstance(values, VMState):
        return dict(values.fields)
    if isinstance(values, Mapping):
        return dict(values)
    return dict(getattr(values, "__dict__", {}))


def _member(f: VMStateField, value: Any, path: str) -> Any:
    if f.kind != "struct":
        return list(value) if f.is_array and not isinstance(value, bytes) else value
    if f.is_array:
        if not isinstance(value, list | tuple):
            raise VisitorError(f"expected a list, got {type(value).__name__}", path=path)
        structs = f.elements if f.elements is not None else (f.struct,) * len(value)
        if len(structs) != len(value):
            raise VisitorError(f"has {len(value)} elements, expected {len(structs)}", path=path)
        out = []
        for i, (sd, item) in enumerate(zip(structs, value, strict=True)):
            assert sd is not None
            is_state = isinstance(item, VMState)
            out.append(item if is_state else state_from_values(sd, item, None, f"{path}[{i}]"))
        return out
    assert f.struct is not None
    return value if isinstance(value, VMState) else state_from_values(f.struct, value, None, path)


def check_state(state: VMState, destination: Any, path: str = "") -> None:
    """Check ``*_equal`` and ``int32 le`` fields against a destination's current values.

    Args:
        state: the incoming state.
        destination: the destination's current values (VMState, mapping or
            device object with the same member names).
        path: member path of ``state`` for error messages.

    Raises:
        VisitorError: naming the member whose value the destination refuses.
    """
    for f in state.desc.fields:
        if f.name not in state.fields:
            continue
        loaded, where = state.fields[f.name], _join(path, f.name)
        current = _get(destination, f.name)
        if f.kind == "struct":
            if isinstance(loaded, VMState) and current is not _MISSING:
                check_state(loaded, current, where)
            elif isinstance(loaded, list) and isinstance(current, list | tuple):
                for i, (item, cur) in enumerate(zip(loaded, current, strict=False)):
                    if isinstance(item, VMState):
                        check_state(item, cur, f"{where}[{i}]")
            continue
        if f.check is None:
            continue
        if current is _MISSING:
            raise VisitorError("the destination has no value to check against", path=where)
        if f.check == "equal" and loaded != current:
            raise VisitorError(f"is {loaded!r}, the destination requires {current!r}", path=where)
        if f.check == "le" and not 0 <= loaded <= current:
            raise VisitorError(f"is {loaded!r}, the destination accepts 0..{current!r}", path=where)
    for name, sub in state.subsections.items():
        # A VMState destination has its own subsections; values or a device
        # object hold the subsection's members directly, as QEMU's struct does.
        dest = (
            destination.subsections.get(name) if isinstance(destination, VMState) else destination
        )
        if dest is not None:
            check_state(sub, dest, _join(path, name))
