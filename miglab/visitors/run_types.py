"""msgspec types that check plain-tree values at C speed, for the object visitors.

The object visitors (:mod:`miglab.visitors.object_visitor`) copy values
between a device state and its plain tree, and must refuse what QEMU's wire
cannot carry: a bool where an integer belongs, an integer out of its field's
range, a buffer of the wrong length.  Checked item by item in Python that is
most of their time on big integer arrays and arrays of small structs, so
this module turns a field's type into a msgspec type (``Annotated[int,
Meta(ge=..., le=...)]`` and so on) and lets :func:`msgspec.convert` check and
copy a whole array, or a whole compiled run of fields
(:class:`~miglab.visitors.base.FieldRun`), in one call.

The types are exactly as strict as the per-field path: msgspec never takes a
bool for an integer nor anything but a bool for a bool; a float field takes
an integer (as ``float()`` would).  A value they refuse makes the caller
return None, and the visitor then takes the per-field path, which raises
the error that names the member.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import msgspec

from miglab.visitors.base import FieldRun

__all__ = ("checked_ints", "checked_run", "checked_runs")

_INTS: dict[tuple[int, bool], Any] = {}
_RUNS: dict[int, tuple[FieldRun, Any, Any, tuple[tuple[str, bool], ...]]] = {}
_MAX_RUNS = 1 << 16
_U64_MAX = (1 << 64) - 1


def _wide(size: int, signed: bool) -> bool:
    """Whether msgspec cannot bound the type above (uint64: bounds must fit an int64)."""
    return size >= 8 and not signed


def _int_type(size: int, signed: bool) -> Any:
    """``list[int]`` of ints within the range of a ``size``-byte integer (cached per size);
    for uint64 only the lower bound (the caller checks the upper one)."""
    hit = _INTS.get((size, signed))
    if hit is None:
        bits = 8 * size
        if signed:
            meta = msgspec.Meta(ge=-(1 << (bits - 1)), le=(1 << (bits - 1)) - 1)
        else:
            meta = msgspec.Meta(ge=0) if _wide(size, signed) else msgspec.Meta(ge=0, le=(1 << bits) - 1)
        hit = _INTS[(size, signed)] = list[Annotated[int, meta]]
    return hit


def checked_ints(values: Any, size: int, signed: bool) -> list[int] | None:
    """A copy of ``values`` if it is a list of ints that each fit ``size`` bytes, else None."""
    if type(values) is not list:
        return None
    try:
        out: list[int] = msgspec.convert(values, _int_type(size, signed))
    except msgspec.ValidationError:
        return None
    if out and _wide(size, signed) and max(out) > _U64_MAX:
        return None
    return out


def _field_type(f: Any) -> Any:
    kind = f.kind
    if kind == "int":
        item = _int_type(f.size, f.signed)
        if f.num is None:
            return item.__args__[0]  # the ranged int itself
        return Annotated[item, msgspec.Meta(min_length=f.num, max_length=f.num)]
    if kind == "bool":
        return bool
    if kind == "float":
        return float
    return Annotated[bytes, msgspec.Meta(min_length=f.size, max_length=f.size)]


def _types(run: FieldRun) -> tuple[Any, Any, tuple[tuple[str, bool], ...]]:
    """The run's TypedDict, a list of them, and its uint64 members ``(name, is_array)``."""
    hit = _RUNS.get(id(run))
    if hit is not None and hit[0] is run:
        return hit[1], hit[2], hit[3]
    one: Any = TypedDict("run", {f.name: _field_type(f) for f in run.fields})  # type: ignore[misc]
    wide = tuple(
        (f.name, f.num is not None)
        for f in run.fields
        if f.kind == "int" and _wide(f.size, f.signed)
    )
    if len(_RUNS) >= _MAX_RUNS:
        _RUNS.clear()
    _RUNS[id(run)] = (run, one, list[one], wide)  # the run kept: its id stays unique
    return one, list[one], wide


def _fits_u64(out: dict[str, Any], wide: tuple[tuple[str, bool], ...]) -> bool:
    for name, is_array in wide:
        v = out[name]
        if (max(v) if is_array and v else v if not is_array else 0) > _U64_MAX:
            return False
    return True


def checked_run(run: FieldRun, node: Any) -> dict[str, Any] | None:
    """A fresh dict of the run's members of ``node`` (other keys ignored) if each
    has its field's type and fits, else None."""
    one, _, wide = _types(run)
    try:
        out: dict[str, Any] = msgspec.convert(node, one)
    except msgspec.ValidationError:
        return None
    return out if not wide or _fits_u64(out, wide) else None


def checked_runs(run: FieldRun, nodes: Any) -> list[dict[str, Any]] | None:
    """:func:`checked_run` over a list of dicts at once (None if any one fails)."""
    _, many, wide = _types(run)
    try:
        out: list[dict[str, Any]] = msgspec.convert(nodes, many)
    except msgspec.ValidationError:
        return None
    if wide and not all(_fits_u64(d, wide) for d in out):
        return None
    return out
