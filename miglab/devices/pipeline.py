"""The marshalling pipeline of the seed: device -> tree -> filters -> wire, and back.

::

    marshal:    device ─ ObjectOutputVisitor ─► tree ─ marshal filters ─► encoder ─► bytes
    unmarshal:  bytes ─ decoder ─► tree ─ unmarshal filters ─ ObjectInputVisitor ─► device

The filters are an argument (:class:`~miglab.vmstate.filters.Filters`, by the
model's vmsd name or for all), as on every other path; there is no registry.  The
encoders here are for one plain object tree (JSON, with bytes as
``{"$bytes": "<base64>"}``, and CBOR); whole streams go through
:mod:`miglab.encoders`.  :func:`tree_to_qemufile` writes a tree as QEMU's
bytes, given the description or the device model that knows its layout.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import cbor2

from miglab.devices.base import Device
from miglab.errors import DescriptionError, EncodingError
from miglab.visitors.base import Visitor
from miglab.visitors.object_visitor import ObjectInputVisitor
from miglab.visitors.qemufile import QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.filters import Filters
from miglab.vmstate.walk import visit_vmstate

__all__ = (
    "Format",
    "decode_tree",
    "encode_tree",
    "marshal",
    "tree_to_qemufile",
    "unmarshal",
)

Format = Literal["json", "cbor"]
D = TypeVar("D", bound=Device)
_BYTES_KEY = "$bytes"


def _to_json(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return {_BYTES_KEY: base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, dict):
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_json(v) for v in obj]
    return obj


def _from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and _BYTES_KEY in obj and isinstance(obj[_BYTES_KEY], str):
            return base64.b64decode(obj[_BYTES_KEY], validate=True)
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


def encode_tree(tree: Any, fmt: Format = "json") -> bytes:
    """Encode a plain object tree as JSON (bytes as base64 objects) or CBOR."""
    try:
        if fmt == "json":
            return json.dumps(_to_json(tree), separators=(",", ":")).encode()
        if fmt == "cbor":
            return bytes(cbor2.dumps(tree))
    except (TypeError, ValueError, cbor2.CBOREncodeError) as exc:
        raise EncodingError(f"cannot encode the tree as {fmt}: {exc}") from None
    raise EncodingError(f"unknown tree format {fmt!r}, expected 'json' or 'cbor'")


def decode_tree(data: bytes, fmt: Format = "json") -> Any:
    """Decode bytes made by :func:`encode_tree`.

    Raises:
        EncodingError: the bytes are not valid for ``fmt``.
    """
    try:
        if fmt == "json":
            return _from_json(json.loads(data))
        if fmt == "cbor":
            return cbor2.loads(data)
    except (ValueError, cbor2.CBORDecodeError) as exc:
        raise EncodingError(f"cannot decode {fmt}: {exc}") from None
    raise EncodingError(f"unknown tree format {fmt!r}, expected 'json' or 'cbor'")


def marshal(device: Device, fmt: Format = "json", *, filters: Filters | None = None) -> bytes:
    """Device -> ObjectOutputVisitor -> tree -> marshal ``filters`` -> encoder -> bytes."""
    tree = device.to_tree()
    if filters:
        tree = filters.marshal_tree(device.VMSD_NAME, tree)
    return encode_tree(tree, fmt)


def unmarshal(
    data: bytes,
    cls: type[D],
    fmt: Format = "json",
    version_id: int | None = None,
    *,
    filters: Filters | None = None,
) -> D:
    """Bytes -> decoder -> tree -> unmarshal ``filters`` -> ObjectInputVisitor -> device.

    Raises:
        EncodingError: the bytes do not decode.
        VisitorError: the tree does not fit the device (names the member).
    """
    tree = decode_tree(data, fmt)
    if filters:
        tree = filters.unmarshal_tree(cls.VMSD_NAME, tree)
    return cls.from_tree(tree, version_id)


Layout = VMStateDescription | type[Device] | Callable[[Visitor, Any], Any]


def tree_to_qemufile(
    tree: Any, layout: Layout, f: QEMUFileWriter, version_id: int | None = None
) -> None:
    """Write an object tree to a QEMUFile as QEMU's bytes.

    The wire carries no names, so the tree is read back with an
    :class:`ObjectInputVisitor` and written again with a
    :class:`QEMUFileOutputVisitor`, following ``layout``:

    * a :class:`VMStateDescription` (the tree of ``visit_vmstate`` with an
      object output visitor);
    * a device model class (the tree of :meth:`Device.to_tree`);
    * a visit function ``fn(v, value) -> value`` written with the ``visit_*``
      functions (called with None to read, then with the value to write).

    Raises:
        VisitorError: the tree does not fit the layout (names the member).
    """
    if isinstance(layout, VMStateDescription):
        state = visit_vmstate(ObjectInputVisitor(tree), layout, None, version_id)
        visit_vmstate(QEMUFileOutputVisitor(f), layout, state)
    elif isinstance(layout, type) and issubclass(layout, Device):
        layout.from_tree(tree, version_id).visit(QEMUFileOutputVisitor(f))
    elif callable(layout):
        fn = cast(Callable[[Visitor, Any], Any], layout)
        fn(QEMUFileOutputVisitor(f), fn(ObjectInputVisitor(tree), None))
    else:
        raise DescriptionError(f"cannot lay out a tree with a {type(layout).__name__}")
