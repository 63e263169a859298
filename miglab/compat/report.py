"""Change reports: every difference a transform makes, as frozen records.

A transform never changes a tree silently: each field or subsection it adds, removes, renames
or changes is one :class:`Change`, with the values before and after and whether the guest
could observe it (``safe`` or ``guest-visible``).  A :class:`ChangeReport` is an ordered,
immutable collection of changes that prints as a table and concatenates with ``+``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ("ACTIONS", "CLASSES", "Change", "ChangeReport", "Classification")

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


def _short(value: Any, limit: int = 40) -> str:
    text = value.hex() if isinstance(value, bytes | bytearray) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
