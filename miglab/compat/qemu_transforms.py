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
from typing import Any

from miglab.compat.edit import Edit
from miglab.compat.pci_bits import pci_bits_fn
from miglab.compat.qemu_knowledge import MACHINE_GENERATIONS, QEMU_VERSIONS, knowledge
from miglab.compat.registry import ANY_DEVICE, Registry, Transform
from miglab.errors import CompatError

__all__ = ("register_qemu_transforms",)


def _edit_fn(device: str, edits: list[dict[str, Any]]) -> Any:
    def run(edit: Edit) -> None:
        if not any(s.desc.name == device for s in edit.states):
            return
        for e in edits:
            _apply_edit(edit, device, e)

    return run


def _apply_edit(edit: Edit, device: str, e: dict[str, Any]) -> None:
    op, path, reason = e["op"], e.get("path", ""), e.get("reason", "")
    if op == "rename":
        edit.rename(device, path, e["to"], info=e.get("info"), num=e.get("num"), reason=reason)
    elif op == "remove":
        value = edit.get(device, path)
        visible = "safe_if" in e and value != e["safe_if"]
        edit.remove(
            device, path, classification="guest-visible" if visible else "safe", reason=reason
        )
    elif op == "add":
        value = bytes(e["size"]) if e.get("value") == "zeros" else e["value"]
        edit.add(
            device, path, e["info"], value, after=e.get("after"), size=e.get("size"), reason=reason
        )
    elif op == "remove_subsection":
        within = e.get("within", "")
        state = edit.state(device)
        for part in filter(None, within.split("/")):
            state = state.fields[part]
        if e["name"] in state.subsections:
            edit.remove_subsection(
                device, e["name"], within=within, classification=e["classification"], reason=reason
            )
    elif op == "resize":
        old = bytes(edit.get(device, path))
        size = e["size"]
        new = old[:size].ljust(size, b"\0")
        lost = any(old[size:])
        edit.set(
            device, path, new, classification="guest-visible" if lost else "safe", reason=reason
        )
    else:
        raise CompatError(f"unknown edit op {op!r} in compat-qemu.json", path=f"{device}/{path}")


def register_qemu_transforms(registry: Registry) -> None:
    """Register the knowledge file's device edits and the PCI rule (between every two machine
    generations) in ``registry``."""
    for t in knowledge()["transforms"]:
        fn = _edit_fn(t["device"], t["edits"])
        registry.add(Transform(t["device"], t["src"], t["dst"], fn, t.get("description", "")))
    for a, b in itertools.pairwise(MACHINE_GENERATIONS):
        for src, dst in ((a, b), (b, a)):
            registry.add(
                Transform(ANY_DEVICE, src, dst, pci_bits_fn(dst), "read-only PCI config bits")
            )
    registry.add_chain(QEMU_VERSIONS)
    registry.add_chain(MACHINE_GENERATIONS)
