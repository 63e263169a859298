"""What a stream's vmdesc says about its sections: a description each, or a legacy size.

QEMU's vmdesc trailer (QEMU-FORMAT.md 1.8) lists the device sections written, by idstr and
instance: most with the fields of their VMStateDescription, from which
:func:`~miglab.vmstate.from_vmdesc.description_from_vmdesc` rebuilds a description the
one walk decodes with; sections of hand-written savevm handlers only with a size
(``vmstate_save_old_style``: one ``data`` buffer).  :func:`index_vmdesc` sorts the
entries into the two; :data:`LEGACY_SECTIONS` names the legacy handlers miglab has a
model of (libslirp's ``slirp``) and :func:`legacy_state` decodes their bytes with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from miglab.errors import DescriptionError, LimitExceeded, MiglabError, MigrationFormatError
from miglab.stream.records import Opaque
from miglab.visitors.qemufile import QEMUFileReader
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.from_vmdesc import description_from_vmdesc, require_unicode
from miglab.vmstate.state import VMState

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("LEGACY_SECTIONS", "VmdescIndex", "index_vmdesc", "legacy_state")


def _read_slirp(r: QEMUFileReader, version_id: int) -> VMState:
    # libslirp's model loads only for a stream that has its section.
    from miglab.devices.slirp import read_slirp_state

    return read_slirp_state(r, version_id)


#: idstr -> reader of the payload, for sections saved by legacy handlers.
LEGACY_SECTIONS: Mapping[str, Callable[[QEMUFileReader, int], VMState]] = {
    "slirp": _read_slirp,
}


@dataclass(slots=True)
class VmdescIndex:
    """The vmdesc's entries by (idstr, instance).

    Attributes:
        descs: the description of each VMState section.
        legacy: sections the vmdesc lists without a description -> the sizes it gives,
            in stream order (two user-mode networks are both ``slirp`` instance 0).
    """

    descs: dict[tuple[str, int], VMStateDescription] = field(default_factory=dict)
    legacy: dict[tuple[str, int], list[int | None]] = field(default_factory=dict)


def index_vmdesc(vmdesc: Mapping[str, Any], at: int | None, text: bytes) -> VmdescIndex:
    """Sort the vmdesc's ``devices`` (parsed from ``text``) into descriptions and legacy sizes.

    Raises:
        DescriptionError, LimitExceeded: an entry is malformed or too big; the error
            names the vmdesc, at ``at`` (the JSON has no byte offsets of its own).
    """
    try:
        require_unicode(text, vmdesc)
        return _index(vmdesc["devices"])
    except (DescriptionError, LimitExceeded) as exc:
        if exc.offset is not None:
            raise
        raise type(exc)(f"in the vmdesc: {exc.message}", offset=at, path=exc.path) from None


def _index(devices: list[Any]) -> VmdescIndex:
    index = VmdescIndex()
    cache: dict[str, VMStateDescription] = {}
    for i, dev in enumerate(devices):
        if not isinstance(dev, dict):
            raise DescriptionError(f"vmdesc device {i} is not an object")
        name, inst = dev.get("name"), dev.get("instance_id")
        if not isinstance(name, str) or not isinstance(inst, int):
            raise DescriptionError(f"vmdesc device {i} lacks a name or instance_id")
        if "vmsd_name" not in dev:  # vmstate_save_old_style: a legacy handler's bytes
            size = dev.get("size")
            sizes = index.legacy.setdefault((name, inst), [])
            sizes.append(size if isinstance(size, int) else None)
            continue
        index.descs[(name, inst)] = description_from_vmdesc(dev, 0, cache)
    return index


def legacy_state(
    view: memoryview, start: int, span: memoryview, name: str, version_id: int
) -> VMState | Opaque:
    """A legacy handler's section payload ``span`` (at ``start`` in ``view``): decoded by
    its model, else kept opaque with the reason."""
    decode = LEGACY_SECTIONS.get(name)
    if decode is None:
        return Opaque(
            span,
            f"section {name!r} is saved by a legacy (non-VMState) savevm handler "
            "and miglab has no model of its format",
        )
    inner = QEMUFileReader(view, start, start + len(span))
    try:
        state = decode(inner, version_id)
        if inner.pos != inner.end:
            raise MigrationFormatError(
                f"{inner.end - inner.pos} bytes left after the {name} state", offset=inner.pos
            )
    except MiglabError as exc:
        return Opaque(span, f"legacy section {name!r} kept undecoded: {exc}")
    return state
