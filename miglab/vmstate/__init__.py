"""VMState descriptions and the one walker that serializes them both ways."""

from __future__ import annotations

from miglab.lazy import lazy_attributes

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from miglab.vmstate.description import (
        INFO_TYPES,
        VMStateDescription,
        VMStateField,
        describe,
        field,
    )
    from miglab.vmstate.filters import Filters
    from miglab.vmstate.from_vmdesc import description_from_vmdesc
    from miglab.vmstate.sizing import SizingVisitor, iter_leaves, wire_size
    from miglab.vmstate.state import VMState
    from miglab.vmstate.walk import visit_vmstate

_LAZY = {
    "INFO_TYPES": "miglab.vmstate.description",
    "VMStateDescription": "miglab.vmstate.description",
    "VMStateField": "miglab.vmstate.description",
    "describe": "miglab.vmstate.description",
    "field": "miglab.vmstate.description",
    "Filters": "miglab.vmstate.filters",
    "description_from_vmdesc": "miglab.vmstate.from_vmdesc",
    "SizingVisitor": "miglab.vmstate.sizing",
    "iter_leaves": "miglab.vmstate.sizing",
    "wire_size": "miglab.vmstate.sizing",
    "VMState": "miglab.vmstate.state",
    "visit_vmstate": "miglab.vmstate.walk",
}

__all__ = (
    "INFO_TYPES",
    "Filters",
    "SizingVisitor",
    "VMState",
    "VMStateDescription",
    "VMStateField",
    "describe",
    "description_from_vmdesc",
    "field",
    "iter_leaves",
    "visit_vmstate",
    "wire_size",
)


__getattr__ = lazy_attributes(__name__, _LAZY)
