"""Change reports: every difference a transform makes, as frozen records.

A transform never changes a tree silently: each field or subsection it adds, removes, renames
or changes is one :class:`Change`, with the values before and after and whether the guest
could observe it (``safe`` or ``guest-visible``).  A :class:`ChangeReport` is an ordered,
immutable collection of changes that prints as a table and concatenates with ``+``.
:func:`vmdesc_entry_changes` reports what a conversion changed in the vmdesc trailer's
description of one stream part (its ``configuration`` entry, rewritten when the machine
name's length changes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = (
    "ACTIONS",
    "CLASSES",
    "Change",
    "ChangeReport",
    "Classification",
    "vmdesc_entry_changes",
)

Classification = Literal["safe", "guest-visible"]
ACTIONS = ("added", "removed", "renamed", "changed")
CLASSES = ("safe", "guest-visible")


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between a transform's input and output tree.

    Attributes:
        action: ``added`` | ``removed`` | ``renamed`` | ``changed``.
        device: the device (vmsd name, or ``configuration``/``commands`` for stream parts).
        path: member path inside the device, ``/``-separated (``parent_obj[0]/config[1]``);
            for a renamed member, its old path.
        before: the value before (None when added).
        after: the value after (None when removed).
        classification: ``safe`` or ``guest-visible``.
        reason: why the change is needed and why it has that classification.
        new_path: for ``renamed``, the new path.
        section: in a stream conversion, the section holding the device (its idstr, with
            ``#instance`` when not 0), which tells two devices of one kind apart.
    """

    action: str
    device: str
    path: str
    before: Any
    after: Any
    classification: Classification
    reason: str = ""
    new_path: str | None = None
    section: str | None = None

    @property
    def guest_visible(self) -> bool:
        """True when the guest could observe this change."""
        return self.classification == "guest-visible"

    def __str__(self) -> str:
        where = f"{self.device}:{self.path}"
        if self.new_path is not None:
            where += f" -> {self.new_path}"
        return f"[{self.classification}] {self.action} {where}: {_short(self.before)} -> {_short(self.after)}  ({self.reason})"


@dataclass(frozen=True, slots=True)
class ChangeReport:
    """The changes of one transform, plan or stream conversion, in the order they were made.

    Attributes:
        changes: every change, in order.
        options: QEMU options the destination must be started with for the converted stream
            (``("-global", "virtio-balloon-pci.vectors=0")``): device properties that keep the
            guest's view where the destination's machine type would give a device another
            layout.  Without them the destination refuses the stream.
    """

    changes: tuple[Change, ...] = ()
    options: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __add__(self, other: ChangeReport) -> ChangeReport:
        return ChangeReport(self.changes + other.changes, self.options + other.options)

    @property
    def guest_visible(self) -> tuple[Change, ...]:
        """The changes the guest could observe."""
        return tuple(c for c in self.changes if c.guest_visible)

    def __str__(self) -> str:
        lines = [str(c) for c in self.changes] or ["no changes"]
        if self.options:
            lines.append("destination options: " + " ".join(self.options))
        return "\n".join(lines)


def vmdesc_entry_changes(
    part: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, reason: str
) -> ChangeReport:
    """The changes between two vmdesc entries (``{vmsd_name, version, fields, subsections}``).

    One :class:`Change` per field key (``size``, ``type``, ``array_len``...) that differs,
    per field or subsection added or removed, and for the version; all ``safe`` (QEMU skips
    the vmdesc when it loads a stream: it describes, it is never read back).  The device is
    ``vmdesc`` and the path starts with ``part`` (``configuration/name/size``).
    """
    changes: list[Change] = []
    _diff_entry(f"{part}", before or {}, after or {}, reason, changes)
    return ChangeReport(tuple(changes))


def _diff_entry(
    path: str, a: Mapping[str, Any], b: Mapping[str, Any], reason: str, out: list[Change]
) -> None:
    def change(action: str, where: str, old: Any, new: Any) -> None:
        out.append(Change(action, "vmdesc", where, old, new, "safe", reason))

    if a.get("version") != b.get("version"):
        change("changed", f"{path}/version", a.get("version"), b.get("version"))
    fields_a, fields_b = _by_name(a.get("fields"), "name"), _by_name(b.get("fields"), "name")
    for name in {**fields_a, **fields_b}:
        fa, fb = fields_a.get(name), fields_b.get(name)
        if fa is None or fb is None:
            change("added" if fa is None else "removed", f"{path}/{name}", fa, fb)
            continue
        for key in {**fa, **fb}:
            if key == "struct" and isinstance(fa.get(key), Mapping):
                _diff_entry(f"{path}/{name}", fa[key], fb.get(key) or {}, reason, out)
            elif fa.get(key) != fb.get(key):
                change("changed", f"{path}/{name}/{key}", fa.get(key), fb.get(key))
    subs_a, subs_b = (
        _by_name(a.get("subsections"), "vmsd_name"),
        _by_name(b.get("subsections"), "vmsd_name"),
    )
    for name in {**subs_a, **subs_b}:
        sa, sb = subs_a.get(name), subs_b.get(name)
        if sa is None or sb is None:
            change("added" if sa is None else "removed", f"{path}/{name}", sa, sb)
        else:
            _diff_entry(f"{path}/{name}", sa, sb, reason, out)


def _by_name(items: Any, key: str) -> dict[str, Mapping[str, Any]]:
    """``items`` (a vmdesc list) by their ``key``, in order; entries of another shape left out."""
    if not isinstance(items, list):
        return {}
    named = (i for i in items if isinstance(i, Mapping))
    return {f"{i.get(key)}" + (f"[{i['index']}]" if "index" in i else ""): i for i in named}


def _short(value: Any, limit: int = 40) -> str:
    text = value.hex() if isinstance(value, bytes | bytearray) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
