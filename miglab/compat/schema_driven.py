"""Schema-driven conversion: make device sections match the destination's ``-dump-vmstate``.

The registered transforms (:mod:`miglab.compat.qemu`) encode what people learned about
particular devices.  This step covers what nobody wrote a rule for, from the two QEMU builds'
schemas alone, after those transforms ran (where they already made a section match, it
changes nothing).  Per device section, matched to a schema description by its vmsd name:

* a subsection the destination's description does not list is removed (QEMU would stop at
  it: it looks subsections up by name);
* a section (or subsection) whose version lies outside the destination's
  ``[minimum_version_id, version_id]`` is refused with :class:`~miglab.errors.CompatError`;
* a top-level field the destination reads at the section's version and the stream lacks is
  added, zero-filled, with the destination's size; a field the destination does not know at
  all is removed;
* a device the source schema describes and the destination schema does not is refused
  (QEMU: "Unknown savevm section").  Devices neither schema lists (``cpu``, ``timer``,
  ``apic``: registered outside qdev, so ``-dump-vmstate`` never shows them) are left alone,
  which is why both schemas are needed; so are those ``compat-schema-safe.json`` lists under
  ``unlisted`` (a build that registers them outside qdev, such as 7.2's ``ide``).

Field names are compared without miglab's de-duplication suffixes (``#1``, ``[0]``) and
without counting them (a schema field with ``num`` may be several vmdesc entries); fields
with a ``field_exists`` predicate may be present or absent, so they are never added.  Sizes
and nested struct fields are not compared.  The schemas carry no ``needed()``
predicates and no meaning, so every change is ``guest-visible`` unless
``miglab/knowledge/compat-schema-safe.json`` lists it as safe; the change's reason says
which.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from miglab.compat.report import Change, ChangeReport, Classification
from miglab.errors import CompatError
from miglab.knowledge import schema_safe
from miglab.vmstate.description import VMStateField, field
from miglab.vmstate.schema import Schema, SchemaField, SchemaSource, SchemaVmsd, load_schema
from miglab.vmstate.state import VMState

__all__ = ("SchemaDriven", "safe_changes")

_SUFFIX = re.compile(r"(#\d+|\[[^\]]*\])$")
_INTS = {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}


def safe_changes() -> dict[str, str]:
    """``compat-schema-safe.json``: ``vmsd/@subsection`` or ``vmsd/field`` -> why it is safe."""
    return schema_safe().safe


@cache
def _unlisted() -> frozenset[str]:
    """vmsd names some build loads although its ``-dump-vmstate`` omits them."""
    return frozenset(schema_safe().unlisted)


def _base(name: str) -> str:
    """A field name without de-duplication or lone-index suffixes (``unused[1]`` -> ``unused``)."""
    while (m := _SUFFIX.search(name)) is not None and m.start() > 0:
        name = name[: m.start()]
    return name


def _on_wire(f: SchemaField, version: int) -> bool:
    return f.exists or f.version_id <= version


class SchemaDriven:
    """The generic step between a source and a destination schema.

    Args:
        src: the ``-dump-vmstate`` schema of the QEMU build (and machine) that wrote the
            stream (a path, bytes, parsed JSON or :class:`~miglab.vmstate.schema.Schema`).
        dst: the destination's schema, likewise.

    Raises:
        DescriptionError: a schema is malformed.
    """

    def __init__(self, src: SchemaSource, dst: SchemaSource) -> None:
        self.src: Schema = load_schema(src)
        self.dst: Schema = load_schema(dst)
        self._src_names = {v.name for v in self.src.devices.values()}
        self._dst: dict[str, list[SchemaVmsd]] = {}
        for v in self.dst.devices.values():
            if v not in self._dst.setdefault(v.name, []):
                self._dst[v.name].append(v)

    def conform(
        self, section: str, states: Sequence[VMState]
    ) -> tuple[list[VMState], ChangeReport]:
        """Make the device state(s) of one section match the destination schema.

        Args:
            section: the section's idstr (for messages).
            states: the section's state after the registered transforms (left unchanged).

        Returns:
            The new states and the report of every change (empty when nothing differs).

        Raises:
            CompatError: the destination lacks the device, cannot load its version, or a
                field's occurrences cannot be matched.
        """
        changes: list[Change] = []
        out: list[VMState] = []
        for state in states:
            name = state.desc.name
            candidates = self._dst.get(name)
            if candidates is None:
                if name in self._src_names and name not in _unlisted():
                    raise CompatError(
                        f"the destination ({self.dst.machine}) has no device {name!r}: "
                        "QEMU would fail with 'Unknown savevm section'",
                        path=section,
                    )
                out.append(state)
                continue
            errors: list[CompatError] = []
            best: tuple[VMState, list[Change]] | None = None
            for vmsd in candidates:  # several classes may share a vmsd name (serial)
                mine = list[Change]()
                try:
                    trial = _conform(state, vmsd, name, "", section, mine)
                except CompatError as exc:
                    errors.append(exc)
                    continue
                if best is None or len(mine) < len(best[1]):
                    best = (trial, mine)
            if best is None:
                raise errors[0]
            new, mine = best
            changes += mine
            out.append(new if mine else state)
        return out, ChangeReport(tuple(changes))


def _conform(
    state: VMState, vmsd: SchemaVmsd, device: str, prefix: str, section: str, out: list[Change]
) -> VMState:
    """``state`` made to follow ``vmsd``; append the changes to ``out``.

    ``state`` is left as it is: the result is a shallow copy of it (and of each subsection
    on the way down), whose ``fields`` and ``subsections`` dicts are changed; field values
    are only ever replaced, so they are shared, not copied.
    """
    where = f"{section}/{prefix}".rstrip("/")
    if not vmsd.minimum_version_id <= state.version_id <= vmsd.version_id:
        raise CompatError(
            f"{device}{'/' + prefix.rstrip('/') if prefix else ''} is at version "
            f"{state.version_id}; the destination loads versions {vmsd.minimum_version_id} "
            f"... {vmsd.version_id}",
            path=where,
        )
    state = VMState(state.desc, state.version_id, dict(state.fields), dict(state.subsections))
    _conform_fields(state, vmsd, device, prefix, where, out)
    known = {s.name: s for s in vmsd.subsections}
    for name in list(state.subsections):
        sub = known.get(name)
        if sub is not None:
            state.subsections[name] = _conform(
                state.subsections[name], sub, device, f"{prefix}@{name}/", section, out
            )
            continue
        before = state.subsections.pop(name)
        state.desc = dataclasses.replace(
            state.desc, subsections=tuple(d for d in state.desc.subsections if d.name != name)
        )
        out.append(
            _change("removed", device, f"{prefix}@{name}", before, None, "subsection", vmsd.name)
        )
    return state


def _conform_fields(
    state: VMState, vmsd: SchemaVmsd, device: str, prefix: str, where: str, out: list[Change]
) -> None:
    wire = [f for f in vmsd.fields if _on_wire(f, state.version_id)]
    known = {_base(f.name) for f in vmsd.fields}
    present = [f for f in state.desc.fields if f.name in state.fields]
    have = {_base(f.name) for f in present}
    for p in present:
        if _base(p.name) not in known:
            before = state.fields.pop(p.name)
            state.desc = dataclasses.replace(
                state.desc, fields=tuple(g for g in state.desc.fields if g.name != p.name)
            )
            out.append(
                _change("removed", device, prefix + p.name, before, None, "field", vmsd.name)
            )
    previous: str | None = None
    for f in wire:
        base = _base(f.name)
        if base in have or f.exists:
            same = [g.name for g in state.desc.fields if _base(g.name) == base]
            previous = same[-1] if same else previous
            continue
        new_field, value = _zero_field(f, f"{where}/{f.name}")
        fields = list(state.desc.fields)
        at = 0 if previous is None else [g.name for g in fields].index(previous) + 1
        fields.insert(at, new_field)
        state.desc = dataclasses.replace(state.desc, fields=tuple(fields))
        items = list(state.fields.items())
        keys = [k for k, _ in items]
        items.insert(keys.index(previous) + 1 if previous in keys else 0, (f.name, value))
        state.fields = dict(items)
        have.add(base)
        previous = f.name
        out.append(_change("added", device, prefix + f.name, None, value, "field", vmsd.name))


def _zero_field(f: SchemaField, where: str) -> tuple[VMStateField, Any]:
    """A field of the destination's size holding zeros (integers when the size is one)."""
    if f.struct is not None:
        raise CompatError(
            "the destination reads a struct field the stream lacks; no zero value for it",
            path=where,
        )
    info = _INTS.get(f.size)
    if info is None:
        size = f.size * (f.num or 1)
        return field(f.name, "buffer", size=size, version_id=f.version_id), bytes(size)
    if f.num is None:
        return field(f.name, info, version_id=f.version_id), 0
    return field(f.name, info, num=f.num, version_id=f.version_id), [0] * f.num


def _change(
    action: str, device: str, path: str, before: Any, after: Any, what: str, vmsd: str
) -> Change:
    key = f"{device}/{path}"
    safe = safe_changes().get(key)
    cls: Classification = "safe" if safe is not None else "guest-visible"
    if action == "removed" and what == "subsection":
        why = f"the destination's {vmsd!r} has no subsection of this name"
    elif action == "removed":
        why = f"the destination's {vmsd!r} has no field of this name"
    else:
        why = f"the destination's {vmsd!r} reads this field at this version; zero-filled"
    rule = (
        f"listed safe in compat-schema-safe.json: {safe}"
        if safe is not None
        else "guest-visible: the schemas do not say whether the guest depends on it"
    )
    return Change(action, device, path, before, after, cls, f"schema-driven: {why} ({rule})")
