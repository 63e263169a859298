"""Compiled layouts: runs of fixed-size fields read or written with one ``struct``.

The walker (:mod:`miglab.vmstate.walk`) visits a description field by field
through the visitor, which is right for every visitor but costs a few Python
calls per field.  On QEMU's wire most fields are fixed-size scalars —
integers, bools, floats, fixed buffers, fixed arrays of integers — whose
bytes sit back to back with no tag between them, so a run of such fields is
one big-endian :class:`struct.Struct`: one ``unpack_from`` to read it, one
``pack`` to write it.

:func:`layout` compiles a description, for one stream version, into *steps*:
a :class:`Run`, or a single :class:`VMStateField` that the walker visits as
before (structs, strings, nullptr, counted arrays and buffers, fields with an
``exists`` predicate).  A run is data; what to do with it is the visitor's
business: a visitor that declares the ``takes_runs`` capability gets whole
runs through :meth:`~miglab.visitors.base.Visitor.visit_run` (the QEMUFile
visitors unpack or pack them with one call, the sizing visitor adds up
their precomputed sizes, the plain-tree visitors copy their values).  A
visitor only takes the fast path when it gives exactly what the per-field
visit would; when it would not — a short read, a bool byte above 1, a value
of an unexpected type or out of range — it returns False, having done
nothing, and the walker visits the run's fields one by one, which raises the
precise error (member path and offset).

:func:`struct_plan` compiles a whole description the same way when it is made
only of runs, nested structs and fixed-length arrays of structs, with
subsections that compile too: a :class:`Plan`, handed whole to a visitor that
declares ``takes_plans`` (the plain-tree visitors copy a tree of dicts in one
step instead of the walk's per-struct bookkeeping), with the same rule: the
visitor returns None, having done nothing, and the walker takes the struct
step by step.
"""

from __future__ import annotations

import functools
import gc
import operator
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from miglab.limits import LIMITS
from miglab.visitors.base import PLAN_RUN, PLAN_STRUCT, PLAN_STRUCTS
from miglab.visitors.base import RUN_BOOL as BOOL
from miglab.visitors.base import RUN_LIST as LIST
from miglab.visitors.base import RUN_SCALAR as SCALAR
from miglab.vmstate.description import VMStateDescription, VMStateField
from miglab.vmstate.state import VMState

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("Plan", "Run", "Step", "flat_run", "layout", "paused_gc", "struct_plan")

_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True, slots=True, eq=False)
class Run:
    """Consecutive fixed-size fields carried by one big-endian struct.

    Attributes:
        fields: the fields, in wire order.
        struct: their bytes, back to back (``size`` is the run's length).
        names: the field names, in wire order.
        plain: True when every field is one unpacked item used as it is
            (integers, floats, buffers), so values are ``zip(names, items)``.
        slots: per field ``(name, start, stop, conv)``: its items
            ``[start:stop]`` of the unpacked tuple and how they become the
            value (one item, a bool, a list).
        bools: indexes of bool items (a byte that must be 0 or 1).
        types: per field, the exact type its value must have for
            a visitor's run writer (anything else takes the per-field path).
        lengths: per field, the element count of an array or the byte length
            of a buffer it must have (None for scalars).
        sized: ``(index, length)`` of the fields with a length to check.
        sizes: per field, its bytes on the wire.
        offsets: per field, where its bytes start within the run.
        take: the run's values, in order, from a field dict (one C call;
            KeyError when one is missing).
        lists: indexes of the fields whose value is a list (integer arrays),
            last first.
    """

    fields: tuple[VMStateField, ...]
    struct: struct.Struct
    names: tuple[str, ...]
    plain: bool
    slots: tuple[tuple[str, int, int, int], ...]
    bools: tuple[int, ...]
    types: tuple[type, ...]
    lengths: tuple[int | None, ...]
    sized: tuple[tuple[int, int], ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    take: Callable[[dict[str, Any]], tuple[Any, ...]]
    lists: tuple[int, ...]


Step = Run | VMStateField

_LAYOUTS: dict[tuple[int, int], tuple[VMStateDescription, tuple[Step, ...], Run | None]] = {}
_MAX_LAYOUTS = 1 << 16


def _code(f: VMStateField) -> tuple[str, int, type, int | None] | None:
    """``(struct code, items, value type, length)`` of a field a run can carry, else None."""
    if f.exists is not None or f.num_field is not None or f.size_field is not None:
        return None
    if f.elements is not None:
        return None
    kind = f.kind
    if kind == "int" and f.size in _INT_CODES:
        code = _INT_CODES[f.size]
        code = code.lower() if f.signed else code
        if f.num is None:
            return code, 1, int, None
        return f"{f.num}{code}", f.num, list, f.num
    if f.num is not None:
        return None  # arrays of bools, floats or buffers are visited element by element
    if kind == "bool":
        return "B", 1, bool, None
    if kind == "float":
        return "d", 1, float, None
    if kind == "bytes":
        return f"{f.size}s", 1, bytes, f.size
    return None


def _compile(fields: list[VMStateField], codes: list[tuple[str, int, type, int | None]]) -> Run:
    slots = []
    bools = []
    at = 0
    for f, (_, items, _, _) in zip(fields, codes, strict=True):
        if f.kind == "bool":
            conv = BOOL
            bools.append(at)
        else:
            conv = LIST if f.num is not None else SCALAR
        slots.append((f.name, at, at + items, conv))
        at += items
    sizes = tuple(struct.calcsize(">" + c[0]) for c in codes)
    offsets = []
    pos = 0
    for n in sizes:
        offsets.append(pos)
        pos += n
    return Run(
        fields=tuple(fields),
        struct=struct.Struct(">" + "".join(c[0] for c in codes)),
        names=tuple(f.name for f in fields),
        plain=all(s[3] == SCALAR for s in slots),
        slots=tuple(slots),
        bools=tuple(bools),
        types=tuple(c[2] for c in codes),
        lengths=tuple(c[3] for c in codes),
        sized=tuple((i, c[3]) for i, c in enumerate(codes) if c[3] is not None),
        sizes=sizes,
        offsets=tuple(offsets),
        take=_taker(tuple(f.name for f in fields)),
        lists=tuple(i for i in reversed(range(len(slots))) if slots[i][3] == LIST),
    )


def _taker(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        (one,) = names
        return lambda values: (values[one],)
    return operator.itemgetter(*names)


def layout(desc: VMStateDescription, version: int) -> tuple[Step, ...]:
    """The steps of ``desc`` for stream ``version`` (fields newer than it left out).

    Compiled once per description object and version; descriptions are
    immutable, and the cache keeps each one it is keyed by alive.
    """
    key = (id(desc), version)
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0] is desc:
        return hit[1]
    return _layout(desc, version)[0]


def flat_run(desc: VMStateDescription, version: int) -> Run | None:
    """The one run that is the whole of ``desc`` at ``version``, if it is one.

    Such a struct (all fields fixed-size, no subsections) is read or written
    whole, without the per-struct bookkeeping; small structs of this kind
    (timers, queue heads, PCI capability parts) are most of QEMU's structs.
    """
    hit = _LAYOUTS.get((id(desc), version))
    if hit is not None and hit[0] is desc:
        return hit[2]
    return _layout(desc, version)[1]


def _layout(desc: VMStateDescription, version: int) -> tuple[tuple[Step, ...], Run | None]:
    steps: list[Step] = []
    run: list[VMStateField] = []
    codes: list[tuple[str, int, type, int | None]] = []
    for f in desc.fields:
        if f.version_id > version:
            continue
        code = _code(f)
        if code is not None:
            run.append(f)
            codes.append(code)
            continue
        if run:
            steps.append(_compile(run, codes))
            run, codes = [], []
        steps.append(f)
    if run:
        steps.append(_compile(run, codes))
    out = tuple(steps)
    flat = out[0] if len(out) == 1 and type(out[0]) is Run and not desc.subsections else None
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[(id(desc), version)] = (desc, out, flat)
    return out, flat


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """A whole description at one version, compiled (see :class:`~miglab.visitors.compiled.StructPlan`).

    Attributes:
        desc: the description.
        version: the version the plan is for (nested plans: their description's).
        steps: ``(PLAN_RUN, run, None, 0)``, ``(PLAN_STRUCT, name, plan, 0)``,
            ``(PLAN_STRUCTS, name, plan, count)``, in wire order.
        subsections: ``(name, plan)`` of every subsection, in order.
        members: field members of a struct node (runs' names and nested ones).
        depth: member-path levels below this struct (an array adds two).
        run: the one run that is the whole struct (no subsections), or None.
        make: ``make(fields, subsections)``, the state the walker builds.
    """

    desc: VMStateDescription
    version: int
    steps: tuple[tuple[int, Any, Any, int], ...]
    subsections: tuple[tuple[str, Plan], ...]
    members: int
    depth: int
    run: Run | None
    make: Callable[[dict[str, Any], dict[str, VMState]], VMState]


_PLANS: dict[tuple[int, int], tuple[VMStateDescription, Plan | None]] = {}


def struct_plan(desc: VMStateDescription, version: int) -> Plan | None:
    """The plan of ``desc`` at ``version``, or None when some field has no
    compiled form: an ``exists`` predicate, a counted array, a string, ...

    Compiled once per description object and version, like :func:`layout`;
    nesting deeper than ``LIMITS.max_depth`` gets no plan either (the walker
    reports it).
    """
    hit = _PLANS.get((id(desc), version))
    if hit is not None and hit[0] is desc:
        return hit[1]
    return _plan(desc, version, 0)


def _plan(desc: VMStateDescription, version: int, depth: int) -> Plan | None:
    hit = _PLANS.get((id(desc), version))
    if hit is not None and hit[0] is desc:
        return hit[1]
    out = _compile_plan(desc, version, depth) if depth <= LIMITS.max_depth else None
    if len(_PLANS) >= _MAX_LAYOUTS:
        _PLANS.clear()
    _PLANS[(id(desc), version)] = (desc, out)
    return out


def _compile_plan(desc: VMStateDescription, version: int, depth: int) -> Plan | None:
    steps: list[tuple[int, Any, Any, int]] = []
    members = 0
    below = 0
    for step in layout(desc, version):
        if type(step) is Run:
            steps.append((PLAN_RUN, step, None, 0))
            members += len(step.names)
            continue
        f = step
        assert isinstance(f, VMStateField)
        if f.kind != "struct" or f.exists is not None or f.num_field is not None:
            return None
        struct_ = f.struct
        count = f.num
        if f.elements is not None:  # per-element descriptions (vmdesc): compiled when one
            if len({id(e) for e in f.elements}) > 1:
                return None
            struct_, count = f.elements[0] if f.elements else f.struct, len(f.elements)
        if struct_ is None:
            return None
        inner = _plan(struct_, struct_.version_id, depth + 1)
        if inner is None:
            return None
        if count is None:
            steps.append((PLAN_STRUCT, f.name, inner, 0))
            below = max(below, 1 + inner.depth)
        else:
            steps.append((PLAN_STRUCTS, f.name, inner, count))
            below = max(below, 2 + inner.depth)
        members += 1
    subsections = []
    for sd in desc.subsections:
        inner = _plan(sd, sd.version_id, depth + 1)
        if inner is None:
            return None
        subsections.append((sd.name, inner))
        below = max(below, 1 + inner.depth)
    return Plan(
        desc=desc,
        version=version,
        steps=tuple(steps),
        subsections=tuple(subsections),
        members=members,
        depth=below,
        run=flat_run(desc, version),
        make=functools.partial(VMState, desc, version),
    )


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a tree of values is built.

    Decoding builds many small containers (dicts, lists, states) that form no
    cycles; each few hundred of them trigger a collection, which scans the
    young objects and, every so often, the whole heap.  Measured on the
    data/ streams this was about half of decode time.  The collector is turned
    back on (if it was on) when the block ends, error or not.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
