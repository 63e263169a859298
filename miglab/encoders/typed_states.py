"""Device states read back through msgspec types made from their descriptions.

A plain tree's device state (:mod:`miglab.encoders.tree`) is a map of members by
name.  Read back member by member in Python — a dict per struct, a check per
run, a copy per array — it was most of a self-describing decode.  Here a
compiled struct plan (:func:`miglab.vmstate.layout.struct_plan`) becomes one
msgspec type: a :class:`msgspec.Struct` per description and version, with
every field's type exactly as strict as the object input visitor (ranged
integers, fixed-length arrays and buffers, bools that are bools; the types of
:mod:`miglab.visitors.run_types`), nested structs and fixed-length arrays of
them as nested types, subsections as optional members, and no member nobody
reads (``forbid_unknown_fields``).  msgspec then checks a whole state in C:
:func:`typed_state` converts a decoded map, :func:`state_decoder` decodes
MessagePack straight into the types, without the plain map in between.  What
is left in Python is making the :class:`~miglab.vmstate.state.VMState`
objects, one per struct, from the checked values.

Integers are bounded by the types except uint64's top, which msgspec cannot
bound: callers hand over only what msgspec's MessagePack, cbrrr (DAG-CBOR) or
orjson decoded, whose integers never exceed 64 bits.  Like the plans, the
types only ever accept what the per-member walk accepts the same way; on
anything else (a value msgspec refuses, a description without a plan) the
caller takes the walk, which raises the error that names the member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

import msgspec

from miglab.errors import LimitExceeded
from miglab.limits import LIMITS, charge_elements
from miglab.visitors.base import PLAN_RUN, PLAN_STRUCT
from miglab.visitors.run_types import field_type
from miglab.vmstate.layout import Plan, struct_plan
from miglab.vmstate.state import VMState

__all__ = ("plan_of", "state_decoder", "typed_state")

_to_builtins = msgspec.to_builtins
_KEEP_TYPES = (bytes, bytearray)  # buffers stay bytes (not base64 text)
_UNSET = msgspec.UNSET
_MAX_TYPES = 1 << 16

# (checked map, charged) -> VMState; ``charged[0]`` counts the array elements made.
_Build = Callable[[dict[str, Any], list[int]], VMState]
_Make = Callable[[dict[str, Any], dict[str, VMState]], VMState]


class _Typed(NamedTuple):
    plan: Plan  # kept, so that its id stays unique while cached
    type: Any  # the msgspec Struct of one state
    make: _Make  # plan.make
    build: _Build | None  # None: a flat struct, whose checked map is its fields as they are
    decoder: msgspec.msgpack.Decoder[Any]


_TYPES: dict[int, _Typed | None] = {}
_KEEP: dict[int, Plan] = {}


def plan_of(desc: Any, version: int) -> Plan | None:
    """The struct plan of ``desc`` at ``version`` if a state of it can be read typed."""
    plan = struct_plan(desc, version)
    if plan is None or plan.depth >= LIMITS.max_depth:
        return None
    return plan


def _typed(plan: Plan) -> _Typed | None:
    key = id(plan)
    if key in _TYPES and _KEEP.get(key) is plan:
        return _TYPES[key]
    try:
        out: _Typed | None = _compile(plan)
    except (TypeError, ValueError):  # e.g. two members of one name: no type, the walk reads it
        out = None
    if len(_TYPES) >= _MAX_TYPES:
        _TYPES.clear()
        _KEEP.clear()
    _TYPES[key] = out
    _KEEP[key] = plan
    return out


def _compile(plan: Plan) -> _Typed | None:
    members: list[tuple[str, Any]] = []  # (wire name, msgspec type), in wire order
    nested: list[tuple[str, _Typed]] = []
    arrays: list[tuple[str, _Typed, int]] = []
    for kind, what, inner, count in plan.steps:
        if kind == PLAN_RUN:
            members.extend((f.name, field_type(f)) for f in what.fields)
            continue
        sub = _typed(inner)
        if sub is None:
            return None
        if kind == PLAN_STRUCT:
            nested.append((what, sub))
            members.append((what, sub.type))
        else:
            arrays.append((what, sub, count))
            many = Annotated[list[sub.type], msgspec.Meta(min_length=count, max_length=count)]  # type: ignore[name-defined]
            members.append((what, many))
    spec: list[Any] = [(f"m{i}", t) for i, (_, t) in enumerate(members)]
    subs: list[tuple[str, _Typed]] = []
    for name, inner in plan.subsections:
        sub = _typed(inner)
        if sub is None:
            return None
        subs.append((name, sub))
        spec.append((f"m{len(spec)}", sub.type | msgspec.UnsetType, _UNSET))
    names = [name for name, _ in members] + [name for name, _ in subs]
    cls = msgspec.defstruct(
        f"state_{plan.desc.name}",
        spec,
        rename={f"m{i}": name for i, name in enumerate(names)},
        forbid_unknown_fields=True,
        kw_only=True,
        gc=False,  # short-lived, never in a cycle: nothing for the collector to scan
    )
    decoder = msgspec.msgpack.Decoder(cls)  # checks the type now, not at the first decode
    return _Typed(plan, cls, plan.make, _builder(plan, nested, arrays, subs), decoder)


def _builder(
    plan: Plan,
    nested: list[tuple[str, _Typed]],
    arrays: list[tuple[str, _Typed, int]],
    subs: list[tuple[str, _Typed]],
) -> _Build | None:
    """How a checked state's map (``to_builtins`` of its Struct: wire names, no
    unset subsections) becomes the state the walk would build (``plan.make``);
    None for a flat struct (no nested states, no subsections)."""
    if not nested and not arrays and not subs:
        return None
    make = plan.make
    inner = tuple((name, t.build, t.make) for name, t in nested)
    many = tuple((name, t.build, t.make, count) for name, t, count in arrays)
    optional = tuple((name, t.build, t.make) for name, t in subs)

    def build(fields: dict[str, Any], charged: list[int]) -> VMState:
        for name, one, made in inner:
            v = fields[name]
            fields[name] = made(v, {}) if one is None else one(v, charged)
        for name, one, made, count in many:
            charged[0] += count
            items = fields[name]
            fields[name] = (
                [made(x, {}) for x in items] if one is None else [one(x, charged) for x in items]
            )
        subsections: dict[str, VMState] = {}
        for name, one, made in optional:
            v = fields.pop(name, None)
            if v is not None:
                subsections[name] = made(v, {}) if one is None else one(v, charged)
        return make(fields, subsections)

    return build


def _charged(t: _Typed, s: Any) -> VMState | None:
    """The state of a checked Struct ``s``, its array elements charged to the budget."""
    fields = _to_builtins(s, builtin_types=_KEEP_TYPES)
    if t.build is None:
        return t.make(fields, {})
    charged = [0]
    out = t.build(fields, charged)
    if charged[0]:
        try:
            charge_elements(charged[0])
        except LimitExceeded:  # the walk charges again, naming the array
            return None
    return out


def typed_state(plan: Plan, raw: Any) -> VMState | None:
    """The state a decoded plain map holds following ``plan``, checked by its type,
    or None where the walk must decide (it raises)."""
    t = _typed(plan)
    if t is None:
        return None
    try:
        s = msgspec.convert(raw, t.type)
    except msgspec.ValidationError:
        return None
    return _charged(t, s)


def state_decoder(plan: Plan) -> Callable[[bytes | memoryview], VMState | None] | None:
    """A reader of one state's MessagePack straight into its types (None: no types
    for ``plan``); the reader gives None where the walk must decide, and raises
    :class:`msgspec.DecodeError` on malformed MessagePack."""
    t = _typed(plan)
    if t is None:
        return None
    decode = t.decoder.decode

    def read(data: bytes | memoryview) -> VMState | None:
        try:
            s = decode(data)
        except msgspec.ValidationError:
            return None
        return _charged(t, s)

    return read
