"""Hand-built descriptions meet device values: build a VMState, check it, on the one walk.

A :class:`~miglab.vmstate.state.VMState` says which subsections it carries;
QEMU decides that on the output side with each subsection's ``needed``
function.  :func:`state_from_values` does the same from a device object
or a mapping, so a hand-written description (QEMU's ``VMStateDescription``)
plus device values gives the state the walker writes.  It is
:func:`~miglab.vmstate.walk.visit_vmstate` with :class:`ValuesInputVisitor`,
an input visitor whose "input" is the device's values (QEMU's saving walk
reads the device struct the same way): the walk decides which fields are there
(versions, ``field_exists``, counts) exactly as when it reads QEMU's bytes.

:func:`check_state` is the destination's side of QEMU's checked types:
``*_equal`` fields must equal the destination's current value and
``int32 le`` fields must lie in ``[0, current]`` (``get_int32_le``).  It is
the walk over the incoming state with :class:`CheckVisitor`, which holds the
destination's values alongside.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from miglab.visitors.base import Visitor
from miglab.vmstate.description import VMStateDescription, VMStateField
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import NULLPTR_MARKER, visit_vmstate

__all__ = ("CheckVisitor", "ValuesInputVisitor", "check_state", "state_from_values")

_MISSING = object()


def _get(values: Any, name: str) -> Any:
    if isinstance(values, VMState):
        return values.fields.get(name, _MISSING)
    if isinstance(values, Mapping):
        return values.get(name, _MISSING)
    return getattr(values, name, _MISSING)


def _as_dict(values: Any) -> dict[str, Any]:
    if isinstance(values, VMState):
        return dict(values.fields)
    if isinstance(values, Mapping):
        return dict(values)
    return dict(getattr(values, "__dict__", {}))


class _Nested(Visitor):
    """What both visitors share: a stack of value sources beside the walk's structs.

    A struct member takes its source from the member of its parent's, a list element from
    the list, a subsection from the parent itself (QEMU's subsections describe the same C
    struct) -- or, for a :class:`VMState`, from its own subsection.
    """

    describes = True

    def __init__(self, values: Any, path: str) -> None:
        super().__init__()
        if path:
            self._path.append(path)
        self._top = values
        self._sources: list[Any] = []
        self._lists: list[Any] = []  # per open list: its source list
        self._field: VMStateField | None = None
        self._subsection: str | None = None
        self._next: VMStateDescription | None = None  # told by the walk
        self._descs: list[VMStateDescription] = []  # per open struct: its description

    def describe_struct(self, desc: Any, version: int) -> None:
        self._next = desc

    def describe_field(self, field: Any) -> None:
        self._field = field

    def _current(self, name: str | None) -> Any:
        """The source value of member ``name`` (None: the current list element)."""
        if name is None:
            items = self._lists[-1]
            i = self._index[-1]
            return items[i] if isinstance(items, list | tuple) and i < len(items) else _MISSING
        src = self._sources[-1]
        return _MISSING if src is _MISSING else _get(src, name)

    def start_struct(self, name: str | None) -> None:
        if not self._sources:
            src = self._top
        elif self._subsection is not None:
            parent = self._sources[-1]
            src = (
                parent.subsections.get(self._subsection, _MISSING)
                if isinstance(parent, VMState)
                else parent
            )
        else:
            src = self._current(name)
        self._subsection = None
        assert self._next is not None
        self._descs.append(self._next)
        self._sources.append(src)
        self._push(name)

    def end_struct(self) -> None:
        self._sources.pop()
        self._descs.pop()
        self._pop()

    def start_list(self, name: str | None, length: int | None) -> int:
        self._lists.append(self._current(name))
        self._push(name)
        self._index.append(0)
        return self._length(name, length)

    def _length(self, name: str | None, length: int | None) -> int:
        assert length is not None
        return length

    def end_list(self) -> None:
        self._lists.pop()
        self._index.pop()
        self._pop()

    def optional(self, name: str, present: bool) -> bool:
        return present


class ValuesInputVisitor(_Nested):
    """An input visitor over device values (a mapping, an object with attributes, a VMState).

    Values are taken as they are (the wire output checks them); a member the walk asks for
    and the values lack is a :class:`~miglab.errors.VisitorError` naming it.  A subsection
    is there when its ``needed`` predicate says so (called with the parent's values; no
    predicate: always, as in QEMU); a :class:`VMState`'s own subsections are kept.
    """

    is_input = True

    def __init__(self, values: Any, path: str = "") -> None:
        super().__init__(values, path)
        self._gathered: list[dict[str, Any]] = []  # per open struct: the values given out

    def _take(self, name: str | None) -> Any:
        value = self._current(name)
        if value is _MISSING:
            raise self.error("is missing", self.member(name))
        if name is not None and self._gathered:
            self._gathered[-1][name] = value
        return value

    def start_struct(self, name: str | None) -> None:
        if name is not None and self._subsection is None and self._sources:
            self._take(name)  # a struct member must be there
        super().start_struct(name)
        self._gathered.append({})

    def end_struct(self) -> None:
        super().end_struct()
        self._gathered.pop()

    def _length(self, name: str | None, length: int | None) -> int:
        items = self._take(name)
        if not isinstance(items, list | tuple):
            raise self.error(f"expected a list, got {type(items).__name__}")
        return len(items)

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        f = self._field
        if f is not None and f.kind == "null" and name is not None:
            return NULLPTR_MARKER
        out: int = self._take(name)
        return out

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        items = self._take(name)
        # bytes stay bytes (a uint8 array given as a buffer), as the wire writer takes them
        out: list[int] = items if isinstance(items, bytes) else list(items)  # type: ignore[assignment]
        return out

    def type_bool(self, name: str | None, value: bool | None) -> bool:
        out: bool = self._take(name)
        return out

    def type_float64(self, name: str | None, value: float | None) -> float:
        out: float = self._take(name)
        return out

    def type_str(self, name: str | None, value: str | None) -> str:
        out: str = self._take(name)
        return out

    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        out: bytes = self._take(name)
        return out

    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        parent = self._sources[-1]
        if isinstance(parent, VMState):
            there = name in parent.subsections
        else:
            sd = self._descs[-1].subsection_named(name)
            needed = sd.needed if sd is not None else None
            there = needed is None or needed(self._gathered[-1] | _as_dict(parent))
        if not there:
            return None
        self._subsection = name
        return version


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
    return visit_vmstate(ValuesInputVisitor(values, path), desc, None, version)


class CheckVisitor(_Nested):
    """An output visitor over an incoming state, the destination's values alongside: each
    ``*_equal`` / ``int32 le`` field is checked against the destination's current value.

    A struct the destination has no value for is not looked into (as QEMU loads into a
    struct that is there); a checked field without a value to check against is an error.
    """

    def _check(self, name: str | None, loaded: Any) -> None:
        f = self._field
        if f is None or f.check is None or name is None:
            return
        src = self._sources[-1]
        if src is _MISSING:
            return
        current = _get(src, name)
        if current is _MISSING:
            raise self.error("the destination has no value to check against", name)
        if f.check == "equal" and loaded != current:
            raise self.error(f"is {loaded!r}, the destination requires {current!r}", name)
        if f.check == "le" and not 0 <= loaded <= current:
            raise self.error(f"is {loaded!r}, the destination accepts 0..{current!r}", name)

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        self._check(name, value)
        return value if value is not None else 0

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        self._check(name, values)
        return values if values is not None else []

    def type_bool(self, name: str | None, value: bool | None) -> bool:
        return bool(value)

    def type_float64(self, name: str | None, value: float | None) -> float:
        return value if value is not None else 0.0

    def type_str(self, name: str | None, value: str | None) -> str:
        return value if value is not None else ""

    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        return value if value is not None else b""

    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        if not present:
            return None
        self._subsection = name
        return version


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
    visit_vmstate(CheckVisitor(destination, path), state.desc, state)
