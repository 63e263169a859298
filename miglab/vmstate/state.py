"""Decoded device state: values by field name, with the description that types them."""

from __future__ import annotations

from dataclasses import dataclass, field

from miglab.vmstate.description import VMStateDescription

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("VMState",)


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
