"""The QEMU build and machine-generation transforms: the knowledge file's edit lists as steps.

``miglab/knowledge/compat-qemu.json`` lists, per device and hop between two builds (or two
machine generations), the edits QEMU's code change implies (rename, remove, add, resize a
field, drop a subsection), each with its reason.  :func:`register_qemu_transforms` turns each
list into a :class:`~miglab.compat.registry.Transform`, adds the read-only PCI config rule
between every two machine generations (:mod:`miglab.compat.pci_bits`) and declares the build
and generation chains, in a registry the caller passes
(:func:`miglab.compat.defaults.default_registry` builds the default one).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from miglab.compat.edit import Edit
from miglab.compat.pci_bits import pci_bits_fn
from miglab.compat.qemu_knowledge import MACHINE_GENERATIONS, QEMU_VERSIONS
from miglab.compat.registry import ANY_DEVICE, Registry, Transform
from miglab.knowledge import compat_qemu
from miglab.knowledge.compat import (
    AddField,
    FieldEdit,
    RemoveField,
    RemoveSubsection,
    RenameField,
)

__all__ = ("register_qemu_transforms",)


def _edit_fn(device: str, edits: Sequence[FieldEdit]) -> Callable[[Edit], None]:
    def run(edit: Edit) -> None:
        if not any(s.desc.name == device for s in edit.states):
            return
        for e in edits:
            _apply_edit(edit, device, e)

    return run


def _apply_edit(edit: Edit, device: str, e: FieldEdit) -> None:
    reason = e.reason
    if isinstance(e, RenameField):
        edit.rename(device, e.path, e.to, info=e.info, num=e.num, reason=reason)
    elif isinstance(e, RemoveField):
        value = edit.get(device, e.path)
        visible = e.safe_if is not None and value != e.safe_if
        edit.remove(
            device, e.path, classification="guest-visible" if visible else "safe", reason=reason
        )
    elif isinstance(e, AddField):
        value = bytes(e.size or 0) if e.value == "zeros" else e.value
        edit.add(device, e.path, e.info, value, after=e.after, size=e.size, reason=reason)
    elif isinstance(e, RemoveSubsection):
        state = edit.state(device)
        for part in filter(None, e.within.split("/")):
            state = state.fields[part]
        if e.name in state.subsections:
            edit.remove_subsection(
                device, e.name, within=e.within, classification=e.classification, reason=reason
            )
    else:
        old = bytes(edit.get(device, e.path))
        new = old[: e.size].ljust(e.size, b"\0")
        lost = any(old[e.size :])
        edit.set(
            device, e.path, new, classification="guest-visible" if lost else "safe", reason=reason
        )


def register_qemu_transforms(registry: Registry) -> None:
    """Register the knowledge file's device edits and the PCI rule (between every two machine
    generations) in ``registry``."""
    for t in compat_qemu().transforms:
        registry.add(Transform(t.device, t.src, t.dst, _edit_fn(t.device, t.edits), t.description))
    for a, b in itertools.pairwise(MACHINE_GENERATIONS):
        for src, dst in ((a, b), (b, a)):
            registry.add(
                Transform(ANY_DEVICE, src, dst, pci_bits_fn(dst), "read-only PCI config bits")
            )
    registry.add_chain(QEMU_VERSIONS)
    registry.add_chain(MACHINE_GENERATIONS)
