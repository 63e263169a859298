"""VMState descriptions and the one walker that serializes them both ways."""

from __future__ import annotations

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
