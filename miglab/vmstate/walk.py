"""The one walker: a description plus a visitor, for both directions.

:func:`visit_vmstate` visits every field a description says is on the wire
for a given version, in order, then the subsections, exactly as QEMU's
``vmstate_save_state``/``vmstate_load_state`` do.  With an output visitor
it writes the given :class:`VMState`; with an input visitor it reads and
returns a new one.  The stream reader decodes device sections with it and
the writer encodes them with it; there is no second parser.  Every other
traversal of a description is a visitor on this walk too: sizes and offsets
(:mod:`miglab.vmstate.sizing`), the plain tree of the self-describing
encoders (:mod:`miglab.visitors.object_visitor`), the leaves of the pandas
tables.

The walker names no visitor class.  What a visitor can do beyond the
contract it declares as a capability (:mod:`miglab.visitors.base`):
``takes_runs`` hands it compiled runs of fixed-size fields
(:mod:`miglab.vmstate.layout`), ``takes_plans`` whole compiled structs,
``describes`` tells it each field and each
struct's description and version first.
Before a struct ends the visitor has its last word
(:meth:`~miglab.visitors.base.Visitor.check_struct`).
"""

from __future__ import annotations

import gc

from miglab.errors import LimitExceeded, MigrationFormatError, VisitorError
from miglab.limits import LIMITS, charge_elements
from miglab.visitors.base import Visitor
from miglab.vmstate.description import VMStateDescription, VMStateField
from miglab.vmstate.layout import Run, Step, flat_run, layout, paused_gc, struct_plan
from miglab.vmstate.state import VMState

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("NULLPTR_MARKER", "visit_vmstate")

NULLPTR_MARKER = 0x30  # VMS_NULLPTR_MARKER, '0'


def visit_vmstate(
    v: Visitor,
    desc: VMStateDescription,
    state: VMState | None = None,
    version_id: int | None = None,
    name: str | None = None,
) -> VMState:
    """Visit ``state`` (output) or read a new state (input) following ``desc``.

    Args:
        v: the visitor; its direction decides what happens.
        desc: the layout.
        state: the state to write; None for input visitors.
        version_id: the stream version of this instance (default: the state's,
            else the description's).  Fields with a higher ``version_id`` are
            not on the wire.
        name: the member name of this struct in its parent (None at top level).
    """
    if v._path or not gc.isenabled():  # nested, or the caller already paused it
        return _visit_struct(v, desc, state, version_id, name)
    with paused_gc():  # a whole section's values at once: no collection midway
        return _visit_struct(v, desc, state, version_id, name)


def _visit_struct(
    v: Visitor,
    desc: VMStateDescription,
    state: VMState | None,
    version_id: int | None,
    name: str | None,
) -> VMState:
    if state is None and not v.is_input:
        raise v.error("has no value", name)
    version = (
        version_id
        if version_id is not None
        else (state.version_id if state is not None else desc.version_id)
    )
    if len(v._path) > LIMITS.max_depth:
        raise LimitExceeded(f"structs nested deeper than {LIMITS.max_depth}", path=v.path(name))
    if v.describes:
        v.describe_struct(desc, version)
    if v.takes_plans and v.takes_runs:  # a plan is runs: not for a visitor that refuses them
        plan = struct_plan(desc, version)
        if plan is not None:
            got = v.visit_plan(name, plan, state)
            if got is not None:
                return got
    fast = v.takes_runs
    if fast:
        flat = flat_run(desc, version)
        if flat is not None:
            src = state.fields if state is not None else None
            values: dict[str, Any] = {}
            if v.visit_struct_run(name, desc.name, flat, src, values):
                # output visitors leave ``values`` alone: the state visited is the answer
                return VMState(desc, version, values, {}) if state is None else state
    v.start_struct(name)
    src = state.fields if state is not None else None
    values = {}
    if fast and (v.is_input or src is not None):
        _visit_steps(v, layout(desc, version), version, src, values)
    else:
        _visit_fields(v, desc.fields, version, src, values)
    subsections: dict[str, VMState] = {}
    for sd in desc.subsections:
        sub = state.subsections.get(sd.name) if state is not None else None
        sub_version = v.start_subsection(
            sd.name, sub.version_id if sub is not None else sd.version_id, sub is not None
        )
        if sub_version is not None:
            subsections[sd.name] = _visit_struct(v, sd, sub, sub_version, sd.name)
    v.check_struct(desc.name)
    v.end_struct()
    return VMState(desc, version, values, subsections)


def _visit_steps(
    v: Visitor,
    steps: tuple[Step, ...],
    version: int,
    src: dict[str, Any] | None,
    values: dict[str, Any],
) -> None:
    """Visit compiled steps: a run at once where the visitor takes it, other fields one by one."""
    for step in steps:
        if type(step) is Run:
            if not v.visit_run(step, src, values):
                _visit_fields(v, step.fields, version, src, values)
        else:
            _visit_fields(v, (step,), version, src, values)  # type: ignore[arg-type]


def _visit_fields(
    v: Visitor,
    fields: tuple[VMStateField, ...],
    version: int,
    src: dict[str, Any] | None,
    values: dict[str, Any],
) -> None:
    """Visit ``fields`` one by one (those on the wire for ``version``) into ``values``."""
    describes = v.describes
    for f in fields:
        if f.version_id > version:
            continue
        if f.exists is not None and not f.exists(values, version):
            continue
        if describes:
            v.describe_field(f)
        cur = src.get(f.name, None) if src is not None else None
        values[f.name] = _visit_field(v, f, cur, values)


def _count(v: Visitor, f: VMStateField, values: dict[str, Any]) -> int | None:
    """Element count of an array field (None for a single element)."""
    if f.elements is not None:
        return len(f.elements)
    if f.num_field is None:
        return f.num
    raw = values.get(f.num_field)
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise v.error(f"count field {f.num_field!r} has no usable value ({raw!r})", f.name)
    n = raw * (f.num or 1)
    if n > LIMITS.max_array_elements:
        raise LimitExceeded(
            f"array of {n} elements exceeds the limit of {LIMITS.max_array_elements}",
            path=v.path(f.name),
        )
    return n


def _size(v: Visitor, f: VMStateField, values: dict[str, Any]) -> int:
    if f.size_field is None:
        return f.size
    raw = values.get(f.size_field)
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise v.error(f"size field {f.size_field!r} has no usable value ({raw!r})", f.name)
    return raw * f.size if f.size else raw  # VMS_VBUFFER | VMS_MULTIPLY


def _visit_field(v: Visitor, f: VMStateField, cur: Any, values: dict[str, Any]) -> Any:
    count = _count(v, f, values)
    if count is None:
        return _visit_one(v, f, f.name, cur, f.struct, values)
    if v.is_input:
        charge_elements(count, path=v.path(f.name))
    if f.kind == "int":
        if cur is not None and not isinstance(cur, list):
            raise v.error(f"expected a list, got {type(cur).__name__}", f.name)
        if cur is not None and not v.is_input and len(cur) != count:
            raise v.error(f"has {len(cur)} elements, the count says {count}", f.name)
        return v.int_array(f.name, cur, count, f.size, f.signed)
    if not v.is_input:
        if not isinstance(cur, list):
            raise v.error(f"expected a list, got {type(cur).__name__}", f.name)
        if len(cur) != count:
            raise v.error(f"has {len(cur)} elements, the count says {count}", f.name)
    if (
        f.kind == "struct"
        and f.elements is None
        and v.takes_runs
        and len(v._path) < LIMITS.max_depth
    ):
        done = _struct_runs(v, f, cur, count)
        if done is not None:
            return done
    n = v.start_list(f.name, count)
    if n != count:
        raise v.error(f"has {n} elements, the count says {count}", f.name)
    out = []
    for i in range(count):
        struct = f.elements[i] if f.elements is not None else f.struct
        item = cur[i] if cur is not None else None
        out.append(_visit_one(v, f, None, item, struct, values))
        v.next_list()
    v.end_list()
    return out


def _struct_runs(v: Visitor, f: VMStateField, cur: Any, count: int) -> list[Any] | None:
    """An array of structs that are each one run, visited at once; None if it is not."""
    struct = f.struct
    assert struct is not None
    version = struct.version_id
    run = flat_run(struct, version)
    if run is None:
        return None
    if v.is_input:
        got = v.visit_struct_runs(f.name, struct.name, run, None, count)
        if got is None:
            return None
        return [VMState(struct, version, d, {}) for d in got]
    for item in cur:
        if type(item) is not VMState or item.version_id != version:
            return None
    if v.visit_struct_runs(f.name, struct.name, run, [x.fields for x in cur], count) is None:
        return None
    return list(cur)


def _visit_one(
    v: Visitor,
    f: VMStateField,
    name: str | None,
    cur: Any,
    struct: VMStateDescription | None,
    values: dict[str, Any],
) -> Any:
    kind = f.kind
    if kind == "int":
        return v.type_int(name, cur, f.size, f.signed)
    if kind == "bool":
        return v.type_bool(name, cur)
    if kind == "bytes":
        return v.type_buffer(name, cur, _size(v, f, values))
    if kind == "struct":
        assert struct is not None
        if cur is not None and not isinstance(cur, VMState):
            raise v.error(f"expected a nested state, got {type(cur).__name__}", v.member(name))
        return _visit_struct(v, struct, cur, None if cur is not None else struct.version_id, name)
    if kind == "float":
        return v.type_float64(name, cur)
    if kind == "str":
        return v.type_str(name, cur)
    if kind == "null":
        marker = v.type_int(name, None if v.is_input else NULLPTR_MARKER, 1, False)
        if marker != NULLPTR_MARKER:
            at = v.offset()
            raise MigrationFormatError(
                f"expected the NULL pointer marker 0x30, got 0x{marker:02x}",
                offset=at - 1 if at is not None else None,
                path=v.path(v.member(name)),
            )
        return None
    raise VisitorError(f"unknown field kind {kind!r}", path=v.path(v.member(name)))
