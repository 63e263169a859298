"""Transforms between two QEMU builds, and whole-stream conversion.

The knowledge lives in ``miglab/knowledge/compat-qemu.json`` (learned by diffing streams of
the same device set made by QEMU 7.2 and 10.0, and by reading the destination's refusals):
per-device edit lists (renames, removed/added fields, resized buffers), which commands each
build knows, and read-only PCI config bits each build's devices set.  Loading this module
registers every device edit list and the PCI rule as transforms in
:data:`~miglab.compat.registry.REGISTRY`, keyed by QEMU version.

:func:`convert_stream` then converts a whole stream: it plans and runs the transforms of every
device section, renames the machine in the configuration block, drops commands the
destination does not know, and rewrites the vmdesc entries of changed sections.  Changes a
guest could observe are refused unless ``allow_guest_visible``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from miglab.compat.edit import Edit
from miglab.compat.registry import ANY_DEVICE, REGISTRY, Registry, Transform
from miglab.compat.report import Change, ChangeReport
from miglab.errors import CompatError
from miglab.stream.configuration import CONFIGURATION, machine_of
from miglab.stream.model import CommandRecord, Record, Section, Stream
from miglab.stream.vmdesc import refresh_vmdesc
from miglab.vmstate.state import VMState

__all__ = (
    "QEMU_VERSIONS",
    "convert_stream",
    "knowledge",
    "qemu_of_machine",
    "register_qemu_transforms",
)


@cache
def knowledge() -> dict[str, Any]:
    """The parsed ``compat-qemu.json``."""
    text = resources.files("miglab.knowledge").joinpath("compat-qemu.json").read_text()
    return json.loads(text)


QEMU_VERSIONS: tuple[str, ...] = tuple(knowledge()["qemu"])


def qemu_of_machine(machine: str) -> str:
    """The QEMU version whose newest machine is ``machine`` (``pc-q35-10.0`` -> ``10.0``).

    Raises:
        CompatError: the name has no version, or miglab knows no such QEMU.
    """
    m = re.search(r"-(\d+\.\d+)$", machine)
    if m is None or m.group(1) not in QEMU_VERSIONS:
        raise CompatError(
            f"cannot tell the QEMU version of machine {machine!r}; known: {QEMU_VERSIONS}"
        )
    return m.group(1)


# --- device edit lists from the knowledge file ---------------------------------------
def _edit_fn(device: str, edits: list[dict[str, Any]]) -> Any:
    def run(edit: Edit) -> None:
        if not any(s.desc.name == device for s in edit.states):
            return
        for e in edits:
            _apply_edit(edit, device, e)

    return run


def _apply_edit(edit: Edit, device: str, e: dict[str, Any]) -> None:
    op, path, reason = e["op"], e["path"], e.get("reason", "")
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


# --- read-only PCI config bits ----------------------------------------------------------
def _pci_fn(dst: str) -> Any:
    rules = knowledge()["pci"]["rules"]

    def run(edit: Edit) -> None:
        for state in list(edit.states):
            for path, config in _pci_configs(state):
                new = bytearray(config)
                why = []
                for rule in rules:
                    if "devices" in rule and state.desc.name not in rule["devices"]:
                        continue
                    cap = _find_capability(config, rule["capability"], rule.get("extended", False))
                    if cap is None or cap + rule["offset"] >= len(new):
                        continue
                    at, mask = cap + rule["offset"], rule["mask"]
                    old = new[at]
                    new[at] = (old | mask) if dst in rule["set_in"] else (old & ~mask)
                    if new[at] != old:
                        why.append(f"{rule['what']} at 0x{at:x}")
                if why:
                    edit.set(
                        state.desc.name,
                        path,
                        bytes(new),
                        classification="guest-visible",
                        reason=f"read-only PCI config bits QEMU {dst} devices set their own way "
                        f"(the guest may have read them): {'; '.join(why)}",
                    )

    return run


def _pci_configs(state: VMState, prefix: str = "") -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for f in state.desc.fields:
        value = state.fields.get(f.name)
        if f.info == "pci config" and isinstance(value, bytes | bytearray | memoryview):
            out.append((prefix + f.name, bytes(value)))
        elif isinstance(value, VMState):
            out += _pci_configs(value, f"{prefix}{f.name}/")
    return out


def _find_capability(config: bytes, cap_id: int, extended: bool) -> int | None:
    """Offset of capability ``cap_id`` in a config space's (extended) capability list."""
    seen: set[int] = set()
    if extended:
        at = 0x100
        while at >= 0x100 and at + 4 <= len(config) and at not in seen:
            seen.add(at)
            header = int.from_bytes(config[at : at + 4], "little")
            if header == 0:
                return None
            if header & 0xFFFF == cap_id:
                return at
            at = (header >> 20) & 0xFFC
        return None
    if len(config) < 64 or not config[0x06] & 0x10:  # status: capabilities list present
        return None
    at = config[0x34] & 0xFC
    while at and at not in seen and at + 2 <= len(config):
        seen.add(at)
        if config[at] == cap_id:
            return at
        at = config[at + 1] & 0xFC
    return None


def register_qemu_transforms(registry: Registry) -> None:
    """Register the knowledge file's device edits and the PCI rule in ``registry``."""
    for t in knowledge()["transforms"]:
        fn = _edit_fn(t["device"], t["edits"])
        registry.add(Transform(t["device"], t["src"], t["dst"], fn, t.get("description", "")))
    for src in QEMU_VERSIONS:
        for dst in QEMU_VERSIONS:
            if src != dst:
                registry.add(
                    Transform(ANY_DEVICE, src, dst, _pci_fn(dst), "read-only PCI config bits")
                )


register_qemu_transforms(REGISTRY)


# --- whole streams -------------------------------------------------------------------------
def convert_stream(
    stream: Stream,
    *,
    to_qemu: str,
    machine: str,
    from_qemu: str | None = None,
    allow_guest_visible: bool = False,
    registry: Registry | None = None,
) -> tuple[Stream, ChangeReport]:
    """Convert ``stream`` for QEMU ``to_qemu`` running ``machine``.

    Args:
        stream: the source stream (left unchanged).
        to_qemu: destination QEMU version (``"7.2"``, ``"10.0"``).
        machine: destination machine type (written to the configuration block).
        from_qemu: source QEMU version; by default read from the stream's machine name.
        allow_guest_visible: accept changes the guest could observe.
        registry: transforms to use (default :data:`REGISTRY`).

    Returns:
        The new stream and the report of every change.

    Raises:
        CompatError: no plan for a device, or guest-visible changes without permission
            (the message lists them).
    """
    reg = registry or REGISTRY
    if to_qemu not in QEMU_VERSIONS:
        raise CompatError(f"unknown destination QEMU {to_qemu!r}; known: {QEMU_VERSIONS}")
    src = from_qemu or qemu_of_machine(stream.machine or "")
    changes: list[Change] = []
    records: list[Record] = []
    touched: list[Section] = []
    for rec in stream.records:
        if (
            isinstance(rec, CommandRecord)
            and rec.command > knowledge()["qemu"][to_qemu]["max_command"]
        ):
            changes.append(
                Change(
                    "removed",
                    "commands",
                    rec.name,
                    rec.command,
                    None,
                    "safe",
                    f"QEMU {to_qemu} does not know this command; it carries no guest state",
                )
            )
            continue
        if isinstance(rec, Section) and isinstance(rec.payload, VMState):
            states, report = reg.plan(rec.payload.desc.name, src, to_qemu).run([rec.payload])
            if report.changes:
                if len(states) != 1:
                    raise CompatError("a stream section must stay one device", path=rec.name)
                rec = dataclasses.replace(rec, payload=states[0], version_id=states[0].version_id)
                touched.append(rec)
                changes += report.changes
        records.append(rec)
    config = stream.configuration
    if config is not None and machine_of(config) != machine:
        raw = machine.encode()
        config = VMState(
            CONFIGURATION,
            config.version_id,
            {**config.fields, "len": len(raw), "name": raw},
            dict(config.subsections),
        )
        changes.append(
            Change(
                "changed",
                "configuration",
                "name",
                stream.machine,
                machine,
                "safe",
                "destination machine type (the device set is converted device by device)",
            )
        )
    out = dataclasses.replace(
        stream, records=records, configuration=config, vmdesc=json.loads(json.dumps(stream.vmdesc))
    )
    refresh_vmdesc(out, touched)
    report = ChangeReport(tuple(changes))
    if report.guest_visible and not allow_guest_visible:
        listed = "; ".join(f"{c.device}:{c.path}" for c in report.guest_visible)
        raise CompatError(
            f"{len(report.guest_visible)} guest-visible change(s) refused "
            f"(allow them explicitly): {listed}"
        )
    return out, report
