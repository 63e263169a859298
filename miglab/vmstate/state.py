"""Decoded device state: values by field name, with the description that types them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from miglab.vmstate.description import VMStateDescription, VMStateField

__all__ = ("VMState", "iter_leaves")


@dataclass(slots=True)
class VMState:
    """The state of one description instance (a section payload, a struct, a subsection).

    Attributes:
        desc: the description the values follow (it carries the types).
        version_id: the version the state was read at / will be written at.
        fields: field name -> value, in wire order.  Values are ``int``,
            ``bool``, ``float``, ``str``, ``bytes``, ``None`` (nullptr), a
            nested :class:`VMState`, or a ``list`` of those for arrays.
        subsections: subsection name -> state, for the subsections present.
    """

    desc: VMStateDescription
    version_id: int
    fields: dict[str, Any] = field(default_factory=dict)
    subsections: dict[str, VMState] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The vmsd name."""
        return self.desc.name

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.fields[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self.fields


def iter_leaves(state: VMState, prefix: str = "") -> Iterator[tuple[str, VMStateField, Any]]:
    """Yield ``(path, field, value)`` for every leaf, depth first, in wire order.

    Arrays of scalars are one leaf (their value a list); arrays of structs
    are walked element by element (``ports[3].portsc``).  Subsections appear
    under their full name (``fw_cfg/dma.dma_addr``).
    """
    for f in state.desc.fields:
        if f.name not in state.fields:
            continue
        value = state.fields[f.name]
        path = f"{prefix}{f.name}"
        if f.kind == "struct":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, VMState):
                        yield from iter_leaves(item, f"{path}[{i}].")
                    else:
                        yield f"{path}[{i}]", f, item
            elif isinstance(value, VMState):
                yield from iter_leaves(value, f"{path}.")
        else:
            yield path, f, value
    for name, sub in state.subsections.items():
        yield from iter_leaves(sub, f"{prefix}{name}.")
