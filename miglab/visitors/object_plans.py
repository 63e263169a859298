"""Whole structs and runs copied between device states and plain trees, checked.

The object visitors (:mod:`miglab.visitors.object_visitor`) hand these
functions what the walk compiled: a run of fixed-size fields
(:func:`run_dict`), or a whole struct plan (:func:`plain_of` writes a
state's tree, :func:`state_of` reads one back, strictly: a member nobody
reads refuses the plan; :func:`charged_state` also charges its arrays to the
decode's budget).  :mod:`miglab.encoders.tree` calls :func:`plain_of` and
:func:`charged_state` directly for a device state that is one plan, before
any visitor or walk.  They only ever accept what the per-member walk would
give the same way: on anything else they return None, having changed
nothing, and the walk takes over and raises the error that names the
member.  Plans are data from :mod:`miglab.vmstate.layout`; the states are
built with ``plan.make``, and nested states are known by having the type of
the state given: this module imports nothing above the visitors.
"""

from __future__ import annotations

import struct

from miglab.errors import LimitExceeded
from miglab.limits import charge_elements
from miglab.visitors.base import PLAN_RUN, PLAN_STRUCT
from miglab.visitors.run_types import checked_run, checked_runs

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

    from miglab.visitors.compiled import FieldRun, StructPlan

__all__ = ("charged_state", "plain_of", "run_dict", "state_of")


def run_dict(run: FieldRun, node: dict[str, Any]) -> dict[str, Any] | None:
    """A fresh dict of the run's members of ``node`` if each has its type and fits, else None.

    A run without arrays is checked by its exact types, its buffers'
    lengths and one ``struct.pack`` (the range check QEMU's wire imposes);
    one with arrays by one msgspec call (:mod:`miglab.visitors.run_types`),
    which copies the lists too, so trees share nothing.  What the first
    refuses (a float field given an integer) the second may still take.
    """
    if not run.lists:
        try:
            vals: tuple[Any, ...] = run.take(node)
        except KeyError:
            return None
        if tuple(map(type, vals)) == run.types and (
            not run.sized or all(len(vals[i]) == n for i, n in run.sized)
        ):
            try:
                run.struct.pack(*vals)
            except struct.error:
                return None
            return dict(zip(run.names, vals))  # noqa: B905 (take gave one value per name)
    return checked_run(run, node)


def plain_of(plan: StructPlan, state: Any) -> dict[str, Any] | None:
    """The plain tree of ``state`` (a state at ``plan.version``) following
    ``plan``, or None where the walk must decide (it raises or converts)."""
    fields = state.fields
    out: dict[str, Any] = {}
    for kind, what, inner, count in plan.steps:
        if kind == PLAN_RUN:
            got = run_dict(what, fields)
            if got is None:
                return None
            if out:
                out.update(got)
            else:
                out = got  # fresh: the first run's dict is the tree's
            continue
        value = fields.get(what)
        if kind == PLAN_STRUCT:
            one = _nested_plain(inner, value, type(state))
            if one is None:
                return None
            out[what] = one
            continue
        if type(value) is not list or len(value) != count:
            return None
        for item in value:
            if type(item) is not type(state) or item.version_id != inner.version:
                return None
        many = (
            checked_runs(inner.run, [item.fields for item in value])
            if inner.run is not None
            else [plain_of(inner, item) for item in value]
        )
        if many is None or None in many:
            return None
        out[what] = many
    if plan.subsections:
        subs = state.subsections
        for name, inner in plan.subsections:
            sub = subs.get(name)
            if sub is None:
                continue
            one = _nested_plain(inner, sub, type(state))
            if one is None:
                return None
            out[name] = one
    return out


def _nested_plain(plan: StructPlan, state: Any, cls: Any) -> dict[str, Any] | None:
    """:func:`plain_of` a nested state, if it is a state (of type ``cls``) at ``plan.version``."""
    if type(state) is not cls or state.version_id != plan.version:
        return None
    return plain_of(plan, state)


def charged_state(plan: StructPlan, node: Any) -> Any:
    """:func:`state_of` with its arrays' elements charged to the decode's budget,
    or None where the walk must decide (it raises, or charges again naming the array)."""
    charged = [0]
    out = state_of(plan, node, charged)
    if out is not None and charged[0]:
        try:
            charge_elements(charged[0])
        except LimitExceeded:
            return None
    return out


def state_of(plan: StructPlan, node: Any, charged: list[int]) -> Any:
    """The state a plain tree node holds following ``plan`` (its arrays' elements
    added to ``charged[0]``), or None where the walk must decide (it raises)."""
    if type(node) is not dict:
        return None
    values: dict[str, Any] = {}
    for kind, what, inner, count in plan.steps:
        if kind == PLAN_RUN:
            got = run_dict(what, node)
            if got is None:
                return None
            if values:
                values.update(got)
            else:
                values = got  # fresh: the first run's dict is the state's
            continue
        value = node.get(what)
        if kind == PLAN_STRUCT:
            one = state_of(inner, value, charged)
            if one is None:
                return None
            values[what] = one
            continue
        if type(value) is not list or len(value) != count:
            return None
        charged[0] += count
        if inner.run is not None:
            dicts = checked_runs(inner.run, value)
            if dicts is None or (dicts and set(map(len, value)) != {inner.members}):
                return None  # or an item with members nobody reads
            make = inner.make
            values[what] = [make(d, {}) for d in dicts]
            continue
        many = []
        for item in value:
            one = state_of(inner, item, charged)
            if one is None:
                return None
            many.append(one)
        values[what] = many
    subsections: dict[str, Any] = {}
    members = plan.members
    for name, inner in plan.subsections:
        if name in node:
            one = state_of(inner, node[name], charged)
            if one is None:
                return None
            subsections[name] = one
            members += 1
    if len(node) != members:
        return None  # members nobody reads
    return plan.make(values, subsections)
