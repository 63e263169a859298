"""Recorded edits on device states: the only way transforms change a tree.

An :class:`Edit` holds copies of the device states a transform works on and offers the
operations compatibility needs — rename, add, remove, resize/retype a field, set a value,
drop or add a subsection, add or remove a whole device — each of which changes the state *and*
its description and records a :class:`~miglab.compat.report.Change`.  So a transform written
with it cannot forget to report.  Paths are ``/``-separated field names, descending through
struct fields (``parent_obj[0]/config[1]``); field names themselves may contain dots.

A registered step (:class:`~miglab.compat.registry.Transform`) runs on an edit made with
``copy_on_write=True``: the states it is given stay the caller's, and each state an operation
changes is copied first -- only that one, and the structs on the path down to it, each a
shallow copy (its ``fields`` and ``subsections`` dicts; values are replaced, never changed in
place, and descriptions are frozen).  So a step costs what it changes, not the size of the
device tree, and the result shares what did not change with its input (as a converted
stream shares its unchanged sections with the source).  A step that fails half-way leaves
its input as it was.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from miglab.compat.report import Change, ChangeReport, Classification
from miglab.errors import CompatError
from miglab.vmstate.description import VMStateDescription, VMStateField, field
from miglab.vmstate.state import VMState

__all__ = ("Edit",)


class Edit:
    """Device states being transformed, and the changes made to them so far.

    Args:
        states: the device states to edit (the list itself becomes :attr:`states`).
        copy_on_write: leave the given states as they are; an operation changes a copy of
            each state it touches, put in their place in :attr:`states` (False: the states
            are changed in place).

    Attributes:
        states: the device states as edited so far.  Read them through :meth:`state` and
            :meth:`get`, change them only through the operations below: with
            ``copy_on_write`` a state not yet changed is still the caller's.
    """

    def __init__(self, states: list[VMState], *, copy_on_write: bool = False) -> None:
        self.states = states
        self._changes: list[Change] = []
        #: With copy_on_write: the copies made so far, by id (they may change in place).
        self._mine: dict[int, VMState] | None = {} if copy_on_write else None

    @property
    def report(self) -> ChangeReport:
        """The changes recorded so far."""
        return ChangeReport(tuple(self._changes))

    def state(self, device: str) -> VMState:
        """The state of ``device`` (vmsd name)."""
        for s in self.states:
            if s.desc.name == device:
                return s
        raise CompatError(f"no device {device!r} in this tree", path=device)

    # --- fields ----------------------------------------------------------------
    def rename(
        self,
        device: str,
        path: str,
        to: str,
        *,
        info: str | None = None,
        num: int | None = None,
        classification: Classification = "safe",
        reason: str = "",
    ) -> None:
        """Rename a field (optionally giving it a new type; the value is converted)."""
        parent, name = self._parent(device, path)
        old = parent.desc.field_named(name)
        value = parent.fields[name]
        before = value
        new_field = dataclasses.replace(old, name=to)
        if info is not None:
            size = None if info in _SIZED else old.size * (old.num or 1)
            new_field = field(to, info, num=num, size=size)
            value = _convert(value, old, new_field)
        _replace_field(parent, name, new_field, value)
        self._record("renamed", device, path, before, value, classification, reason, to)

    def add(
        self,
        device: str,
        path: str,
        info: str,
        value: Any,
        *,
        after: str | None = None,
        size: int | None = None,
        num: int | None = None,
        classification: Classification = "safe",
        reason: str = "",
    ) -> None:
        """Add a field after ``after`` (a sibling name; None = first)."""
        parent, name = self._parent(device, path)
        if name in parent.fields:
            raise CompatError("field already present, cannot add it", path=f"{device}/{path}")
        new_field = field(name, info, size=size, num=num)
        fields = list(parent.desc.fields)
        at = 0 if after is None else [f.name for f in fields].index(after) + 1
        fields.insert(at, new_field)
        _set_desc(parent, dataclasses.replace(parent.desc, fields=tuple(fields)))
        items = list(parent.fields.items())
        present = [k for k, _ in items]
        pos = next((i + 1 for i, k in enumerate(present) if k == after), 0) if after else 0
        items.insert(pos, (name, value))
        parent.fields = dict(items)
        self._record("added", device, path, None, value, classification, reason)

    def remove(
        self, device: str, path: str, *, classification: Classification = "safe", reason: str = ""
    ) -> Any:
        """Remove a field; returns its value."""
        parent, name = self._parent(device, path)
        parent.desc.field_named(name)
        value = parent.fields.pop(name)
        fields = tuple(f for f in parent.desc.fields if f.name != name)
        _set_desc(parent, dataclasses.replace(parent.desc, fields=fields))
        self._record("removed", device, path, value, None, classification, reason)
        return value

    def set(
        self,
        device: str,
        path: str,
        value: Any,
        *,
        classification: Classification,
        reason: str = "",
    ) -> None:
        """Change a field's value (a top-level buffer's length may change with it)."""
        parent, name = self._leaf(device, path)
        f = parent.desc.field_named(name)
        before = parent.fields[name]
        if before == value:
            return
        parent, _ = self._leaf(device, path, write=True)
        if f.kind == "bytes" and f.size_field is None and len(value) != f.size:
            self._parent(device, path)  # a resize is a layout edit
            _replace_field(parent, name, dataclasses.replace(f, size=len(value)), value)
        else:
            parent.fields[name] = value
        self._record("changed", device, path, before, value, classification, reason)

    def get(self, device: str, path: str) -> Any:
        """A field's current value."""
        parent, name = self._leaf(device, path)
        return parent.fields[name]

    # --- subsections and devices -------------------------------------------------
    def remove_subsection(
        self,
        device: str,
        name: str,
        *,
        within: str = "",
        classification: Classification = "safe",
        reason: str = "",
    ) -> None:
        """Drop a subsection the destination does not know (of the struct field at path
        ``within``, ``/``-separated, or of the device itself)."""
        state = self._writable_state(device)
        for part in filter(None, within.split("/")):
            state = self._child(state, part, f"{device}/{within}", write=True)
        if name not in state.subsections:
            raise CompatError("no such subsection", path=f"{device}/{within}/@{name}")
        sub = state.subsections.pop(name)
        subs = tuple(d for d in state.desc.subsections if d.name != name)
        state.desc = dataclasses.replace(state.desc, subsections=subs)
        where = f"{within}/@{name}" if within else f"@{name}"
        self._record("removed", device, where, sub, None, classification, reason)

    def add_device(
        self, state: VMState, *, classification: Classification = "safe", reason: str = ""
    ) -> None:
        """Add a whole device state (one device becoming two)."""
        self.states.append(state)
        self._record("added", state.desc.name, "", None, state, classification, reason)

    def remove_device(
        self, device: str, *, classification: Classification = "safe", reason: str = ""
    ) -> VMState:
        """Remove a whole device state (two devices becoming one)."""
        state = self.state(device)
        self.states.remove(state)
        self._record("removed", device, "", state, None, classification, reason)
        return state

    # --- internals ---------------------------------------------------------------
    def _parent(self, device: str, path: str) -> tuple[VMState, str]:
        """The top-level state holding ``path``, to change (layout edits stay at the top level)."""
        if "/" in path:
            raise CompatError(
                "layout edits of nested structs are not supported", path=f"{device}/{path}"
            )
        return self._writable_state(device), path

    def _leaf(self, device: str, path: str, *, write: bool = False) -> tuple[VMState, str]:
        """The (possibly nested) state holding ``path``, for value edits (``write``: to
        change, so copied down the path with ``copy_on_write``)."""
        state = self._writable_state(device) if write else self.state(device)
        *outer, name = path.split("/")
        for part in outer:
            state = self._child(state, part, f"{device}/{path}", write=write)
        if name not in state.fields:
            raise CompatError("no such field", path=f"{device}/{path}")
        return state, name

    def _child(self, state: VMState, part: str, where: str, *, write: bool) -> VMState:
        """The struct field ``part`` of ``state`` (made a copy of its own there when
        ``write``; ``state`` must then be writable already)."""
        child = state.fields.get(part)
        if not isinstance(child, VMState):
            raise CompatError("not a struct field", path=where)
        if write:
            child = state.fields[part] = self._writable(child)
        return child

    def _writable_state(self, device: str) -> VMState:
        """The state of ``device``, to change: with ``copy_on_write``, a copy of its own
        in its place in :attr:`states`."""
        state = self.state(device)
        mine = self._writable(state)
        if mine is not state:
            self.states[next(i for i, s in enumerate(self.states) if s is state)] = mine
        return mine

    def _writable(self, state: VMState) -> VMState:
        """``state`` itself if this edit may change it, else a shallow copy it may change."""
        if self._mine is None or id(state) in self._mine:
            return state
        mine = VMState(state.desc, state.version_id, dict(state.fields), dict(state.subsections))
        self._mine[id(mine)] = mine
        return mine

    def _record(
        self,
        action: str,
        device: str,
        path: str,
        before: Any,
        after: Any,
        classification: Classification,
        reason: str,
        new_path: str | None = None,
    ) -> None:
        self._changes.append(
            Change(action, device, path, before, after, classification, reason, new_path)
        )


# Type names whose element size is implied by the name (others keep the old byte size).
_SIZED = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)


def _convert(value: Any, old: VMStateField, new: VMStateField) -> Any:
    """Re-express a value in a new type of the same wire size (bytes <-> bools/ints)."""
    raw = _to_bytes(value, old)
    if new.kind == "bytes":
        return raw
    size = new.size
    items = [
        int.from_bytes(raw[i : i + size], "big", signed=new.signed)
        for i in range(0, len(raw), size)
    ]
    if new.kind == "bool":
        items = [bool(x) for x in items]
    return items if new.num is not None else items[0]


def _to_bytes(value: Any, f: VMStateField) -> bytes:
    if f.kind == "bytes":
        return bytes(value)
    items = value if isinstance(value, list) else [value]
    return b"".join(int(x).to_bytes(f.size, "big", signed=f.signed) for x in items)


def _replace_field(state: VMState, name: str, new: VMStateField, value: Any) -> None:
    fields = tuple(new if f.name == name else f for f in state.desc.fields)
    _set_desc(state, dataclasses.replace(state.desc, fields=fields))
    state.fields = {
        (new.name if k == name else k): (value if k == name else v) for k, v in state.fields.items()
    }


def _set_desc(state: VMState, desc: VMStateDescription) -> None:
    state.desc = desc
