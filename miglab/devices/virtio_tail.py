"""Where a value of ``vmstate_virtio``'s subsections sits in a device's ``virtio`` bytes, found
without decoding them.

:func:`~miglab.devices.virtio.decode_virtio` reads a device's whole ``virtio`` field: the PCI
header, the queues, the device part and the subsections, whose 1024-entry queue arrays are most
of its ~45 KB and of its ~2 ms.  A conversion that only reads or rewrites one subsection value
(the acked feature bits, :mod:`miglab.compat.virtio_features`) runs while the guest is stopped,
so it finds the value by the subsection's header instead, where that tells it for sure:

* the header (type byte, name length, name) does not occur in the bytes: the subsection is not
  there (what QEMU sends holds its header verbatim);
* it occurs once, and from it the subsections, stepped over by their headers and the fixed
  sizes of their fields, end exactly at the end of the bytes -- the test ``decode_virtio``
  itself uses to find where they start after an undescribed device part: the value is the
  field's bytes after the header's version.

Otherwise (the header twice, a size that is not fixed, an end that does not match) it cannot
tell, and the caller decodes.  Nothing before the subsection is read, so bytes that are wrong
there are not noticed here; the destination QEMU reads them.
"""

from __future__ import annotations

from miglab.devices.virtio import SUBSECTIONS
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.layout import Run, flat_run, layout
from miglab.wire import SectionType

__all__ = ("subsection_value_at",)

_BY_NAME = {s.name.encode(): s for s in SUBSECTIONS}


def subsection_value_at(data: bytes, name: str) -> int | None:
    """Where the fields of ``vmstate_virtio``'s subsection ``name`` start in ``data`` (a
    device's ``virtio`` bytes); -1 when the subsection is not in them; None when that cannot
    be told without decoding them (see the module docstring)."""
    head = bytes((SectionType.SUBSECTION, len(name))) + name.encode()
    at = data.find(head)
    if at < 0:
        return -1
    if data.find(head, at + 1) >= 0 or _skip_subsections(data, at, _BY_NAME) != len(data):
        return None
    return at + len(head) + 4  # after the subsection's version_id


def _skip_subsections(data: bytes, p: int, subs: dict[bytes, VMStateDescription]) -> int:
    """Where the subsections (of those in ``subs``, by name) at ``p`` end; -1 where one does
    not fit in ``data`` or its size is not fixed."""
    while p < len(data) and data[p] == SectionType.SUBSECTION:
        n = data[p + 1] if p + 1 < len(data) else 0
        sub = subs.get(data[p + 2 : p + 2 + n])
        if sub is None:
            break
        version = int.from_bytes(data[p + 2 + n : p + 6 + n], "big")
        if not sub.minimum_version_id <= version <= sub.version_id:
            return -1
        p = _skip(data, p + 6 + n, sub, version)
        if p < 0:
            return -1
    return p if p <= len(data) else -1


def _skip(data: bytes, p: int, desc: VMStateDescription, version: int) -> int:
    """Where ``desc``'s bytes at ``p`` end, by the fixed sizes of its fields (runs and fixed
    arrays of structs) and its subsections' headers; -1 where a size is not fixed."""
    for step in layout(desc, version):
        if isinstance(step, Run):
            p += step.struct.size
            continue
        inner = step.struct
        if (
            step.kind != "struct"
            or inner is None
            or step.num_field is not None
            or step.exists is not None
            or step.elements is not None
        ):
            return -1
        count = 1 if step.num is None else step.num
        flat = flat_run(inner, inner.version_id)
        if flat is not None:
            p += count * flat.struct.size
            continue
        for _ in range(count):
            p = _skip(data, p, inner, inner.version_id)
            if p < 0:
                return -1
    if desc.subsections:
        return _skip_subsections(data, p, {s.name.encode(): s for s in desc.subsections})
    return p
