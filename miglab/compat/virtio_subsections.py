"""Subsections of a virtio device's own part whose name differs between QEMU builds.

A virtio device's own state (``vdc->vmsd``, e.g. ``virtio-balloon-device``) travels inside the
opaque ``virtio`` field (:mod:`miglab.devices.virtio`), with its subsections.  QEMU 5.1 to 6.1
named virtio-balloon's page-poison subsection ``vitio-balloon-device/page-poison`` (sic); 6.2
fixed the name.  Neither side loads the other's: a newer build stops reading the device part
at the misspelt name (its prefix is not the part's name) and then misses the section footer;
QEMU 5.2 does the same with its own name and fails on the fixed one.  The rules live in
``compat-virtio.json`` (``subsections``): going to the newer build renames the subsection
(safe: same field, same bytes); going to a build that cannot load it drops it, safe when the
field holds what that build's device starts with, guest-visible otherwise.

Steps are keyed on QEMU builds (what a build's code names the subsection), not machine types.
"""

from __future__ import annotations

from collections.abc import Callable

from miglab.compat.edit import Edit
from miglab.compat.registry import Registry, Transform
from miglab.compat.report import Classification
from miglab.devices.virtio import VIRTIO_INFO, decode_virtio, encode_virtio
from miglab.errors import CompatError
from miglab.knowledge import compat_virtio
from miglab.knowledge.compat import SubsectionRule
from miglab.vmstate.state import VMState

__all__ = ("register_subsection_transforms",)


def register_subsection_transforms(registry: Registry) -> None:
    """A step each way between each rule's ``old_build`` and ``new_build``."""
    for rule in compat_virtio().subsections.rules:
        old, new = rule.old_build, rule.new_build
        registry.add(
            Transform(
                rule.device, old, new, _step(rule, rename=True),
                f"{rule.old_name} is {rule.new_name} from QEMU {new} on",
            )
        )  # fmt: skip
        registry.add(
            Transform(
                rule.device, new, old, _step(rule, rename=rule.old_build_loads),
                f"{rule.new_name} " + (
                    f"is {rule.old_name} on QEMU {old}" if rule.old_build_loads
                    else f"cannot be loaded by QEMU {old}: dropped"
                ),
            )
        )  # fmt: skip


def _step(rule: SubsectionRule, *, rename: bool) -> Callable[[Edit], None]:
    def run(edit: Edit) -> None:
        if any(s.desc.name == rule.device for s in edit.states):
            _convert(edit, edit.state(rule.device), rule, rename=rename)

    return run


def _convert(edit: Edit, state: VMState, rule: SubsectionRule, *, rename: bool) -> None:
    name = next((f.name for f in state.desc.fields if f.info == VIRTIO_INFO), None)
    if name is None or not isinstance(state.fields[name], bytes | bytearray):
        return
    inner = decode_virtio(bytes(state.fields[name]), state.desc.name)
    part = inner.fields.get("device")
    if not isinstance(part, VMState) or part.desc.name != rule.part:
        return
    present = [n for n in (rule.old_name, rule.new_name) if n in part.subsections]
    if not present:
        return
    have = present[0]
    want = rule.new_name if rename and have == rule.old_name else rule.old_name
    sub = part.subsections.pop(have)
    where = f"{state.desc.name}/{name}/device/{have}"
    if rename:
        if have == want:  # already the destination's name
            part.subsections[have] = sub
            return
        desc = next((d for d in part.desc.subsections if d.name == want), None)
        if desc is None:
            raise CompatError(f"{part.desc.name} has no subsection {want}", path=where)
        part.subsections[want] = VMState(desc, sub.version_id, sub.fields, sub.subsections)
        classification: Classification = "safe"
        reason = f"subsection {have} renamed {want} (same fields and bytes; {rule.source})"
    else:
        value = sub.fields[rule.field]
        classification = "safe" if value == rule.default else "guest-visible"
        reason = (
            f"subsection {have} ({rule.field}={value}) dropped: QEMU {rule.old_build} "
            f"cannot load it under any name ({rule.source})"
        )
        if classification != "safe":
            reason += f"; {rule.field} is {rule.default} there: {rule.what}"
    edit.set(
        state.desc.name,
        name,
        encode_virtio(inner),
        classification=classification,
        reason=f"virtio save data re-encoded; inside it: {reason}",
    )
