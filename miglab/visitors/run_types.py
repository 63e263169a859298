"""msgspec types that check plain-tree values at C speed, for the object visitors.

The object visitors (:mod:`miglab.visitors.object_visitor`) copy values
between a device state and its plain tree, and must refuse what QEMU's wire
cannot carry: a bool where an integer belongs, an integer out of its field's
range, a buffer of the wrong length.  Checked item by item in Python that is
most of their time on big integer arrays and arrays of small structs, so
this module turns a field's type into a msgspec type (``Annotated[int,
Meta(ge=..., le=...)]`` and so on) and lets :func:`msgspec.convert` check and
copy a whole array, or a whole compiled run of fields
(:class:`~miglab.visitors.compiled.FieldRun`), in one call.

The types are exactly as strict as the per-field path: msgspec never takes a
bool for an integer nor anything but a bool for a bool; a float field takes
an integer (as ``float()`` would).  A value they refuse makes the caller
return None, and the visitor then takes the per-field path, which raises
the error that names the member.
"""

from __future__ import annotations

import itertools
import operator
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, TypedDict

import msgspec

if TYPE_CHECKING:
    from miglab.visitors.compiled import FieldRun

__all__ = ("checked_ints", "checked_run", "checked_runs", "field_type")

_INTS: dict[tuple[int, bool], tuple[Any, Any]] = {}
_RUNS: dict[int, _RunTypes] = {}
_MAX_RUNS = 1 << 16
_U64_MAX = (1 << 64) - 1

# msgspec keeps what it compiled from a type on TypedDict classes, but parses a
# bare ``list[...]`` again on every call; so each list travels as the one item
# of a TypedDict.  The types are made at run time, from the descriptions: to a
# type checker they are values (Any).
_TypedDict: Any = TypedDict
_List: Any = list
_Annotated: Any = Annotated


def _wide(size: int, signed: bool) -> bool:
    """Whether msgspec cannot bound the type above (uint64: bounds must fit an int64)."""
    return size >= 8 and not signed


def _int_types(size: int, signed: bool) -> tuple[Any, Any]:
    """The ranged int of a ``size``-byte integer, and a TypedDict of a list of them
    (cached per size); for uint64 only the lower bound (callers check the upper one)."""
    hit = _INTS.get((size, signed))
    if hit is None:
        bits = 8 * size
        if signed:
            meta = msgspec.Meta(ge=-(1 << (bits - 1)), le=(1 << (bits - 1)) - 1)
        elif _wide(size, signed):
            meta = msgspec.Meta(ge=0)
        else:
            meta = msgspec.Meta(ge=0, le=(1 << bits) - 1)
        item = _Annotated[int, meta]
        hit = _INTS[(size, signed)] = (item, _TypedDict("ints", {"v": _List[item]}))
    return hit


def checked_ints(values: Any, size: int, signed: bool) -> list[int] | None:
    """A copy of ``values`` if it is a list of ints that each fit ``size`` bytes, else None."""
    if type(values) is not list:
        return None
    try:
        out: list[int] = msgspec.convert({"v": values}, _int_types(size, signed)[1])["v"]
    except msgspec.ValidationError:
        return None
    if _wide(size, signed) and max(out, default=0) > _U64_MAX:
        return None
    return out


def field_type(f: Any) -> Any:
    """The msgspec type of one run field's value (see the module docstring)."""
    kind = f.kind
    if kind == "int":
        item = _int_types(f.size, f.signed)[0]
        if f.num is None:
            return item
        return _Annotated[_List[item], msgspec.Meta(min_length=f.num, max_length=f.num)]
    if kind == "bool":
        return bool
    if kind == "float":
        return float
    return Annotated[bytes, msgspec.Meta(min_length=f.size, max_length=f.size)]


class _RunTypes(NamedTuple):
    run: FieldRun  # kept, so that its id stays unique while cached
    one: Any  # TypedDict of the run's members
    many: Any  # TypedDict of one list of those
    wide: tuple[tuple[str, bool], ...]  # uint64 members: (name, is_array)


def _types(run: FieldRun) -> _RunTypes:
    hit = _RUNS.get(id(run))
    if hit is not None and hit.run is run:
        return hit
    one = _TypedDict("run", {f.name: field_type(f) for f in run.fields})
    many = _TypedDict("runs", {"v": _List[one]})
    wide = tuple(
        (f.name, f.num is not None)
        for f in run.fields
        if f.kind == "int" and _wide(f.size, f.signed)
    )
    if len(_RUNS) >= _MAX_RUNS:
        _RUNS.clear()
    hit = _RUNS[id(run)] = _RunTypes(run, one, many, wide)
    return hit


def _fits_u64(maps: list[dict[str, Any]], wide: tuple[tuple[str, bool], ...]) -> bool:
    for name, is_array in wide:
        got = map(operator.itemgetter(name), maps)
        if max(itertools.chain.from_iterable(got) if is_array else got, default=0) > _U64_MAX:
            return False
    return True


def checked_run(run: FieldRun, node: dict[str, Any]) -> dict[str, Any] | None:
    """A fresh dict of the run's members of ``node`` (other keys ignored) if each
    has its field's type and fits, else None."""
    t = _types(run)
    try:
        # only the run's members go to msgspec (which visits every key it is given);
        # a node of as many keys as the run has members is them or lacks one (refused)
        src = node if len(node) == len(run.names) else dict(zip(run.names, run.take(node)))  # noqa: B905
        out: dict[str, Any] = msgspec.convert(src, t.one)
    except (KeyError, msgspec.ValidationError):
        return None
    return out if not t.wide or _fits_u64([out], t.wide) else None


def checked_runs(run: FieldRun, nodes: Any) -> list[dict[str, Any]] | None:
    """Fresh dicts of a list of maps, each with the run's members (other keys
    ignored: the caller counts them), if each has its type and fits, else None."""
    t = _types(run)
    try:
        out: list[dict[str, Any]] = msgspec.convert({"v": nodes}, t.many)["v"]
    except msgspec.ValidationError:
        return None
    return out if not t.wide or _fits_u64(out, t.wide) else None
