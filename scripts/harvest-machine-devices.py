#!/usr/bin/env python3
"""Harvest which device classes a pc/q35 machine of each QEMU build can have.

A ``-dump-vmstate`` schema lists every device class of the build with a vmsd (xen-*, ufs,
emmc, Arm boards' sysbus devices...) and says nothing of buses or machines, so which of them
a given machine can have is not in the schema: this script asks the real builds once and
writes ``miglab/knowledge/machine-devices.json``, which ``miglab check-schemas --machine``
reads (:mod:`miglab.compat.machine_devices`).  Per build (5.2, 7.2, 10.0, 11.1):

* **board**: the devices of every pc/q35 machine type of ``-machine help``, started with
  ``-nodefaults -S`` under each configuration of ``CONFIGS`` (TCG; KVM, whose board has
  ``kvm-i8259``, ``kvm-ioapic``, ``kvm-pit``, ``kvmclock``; KVM with the split irqchip;
  KVM's Xen emulation, which adds ``xen-overlay``...), read from ``info qtree``;
* **pluggable**, per machine family (its newest type): every ``-device help`` entry whose
  bus type the machine can offer.  Bus types offered start with the board's; every
  ``-device`` entry that plugs into an offered bus is instantiated (in batches, split on
  failure) and the buses and child devices it brings are read from ``info qtree``, until no
  new bus type appears.  Devices a failed realize shows cannot be on this machine (a sysbus
  device the machine does not allow, "No 'X' bus found") are left out; any other failure
  (a missing ``drive``/``chardev``) means the device needs properties, so it still counts;
* **children**: devices a pluggable device creates (``virtio-net-device`` inside
  ``virtio-net-pci``);
* **schema**: the sorted class names of the build's ``-dump-vmstate``, to recognise a
  schema as this build's.

Regenerate with ``python scripts/harvest-machine-devices.py [--qemu 7.2 ...]`` (about a
minute per build).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miglab.qemu import QEMU_VERSIONS, QemuBinary, find_qemu  # noqa: E402

OUT = ROOT / "miglab" / "knowledge" / "machine-devices.json"
#: Accelerator configurations a board is started under; ``default`` ones are what
#: ``--machine`` assumes, the others are opted into by name.
CONFIGS = {
    "tcg": {"accel": "tcg", "default": True},
    "kvm": {"accel": "kvm", "default": True},
    "kvm-split-irqchip": {"accel": "kvm,kernel-irqchip=split", "default": True},
    "kvm-xen-emulation": {"accel": "kvm,kernel-irqchip=split,xen-version=0x4000a", "default": False},
}
#: Realize errors that say the device cannot be on this machine at all.
_IMPOSSIBLE = (
    re.compile(r"cannot be handled by this machine"),
    re.compile(r"No '[^']+' bus found"),
    re.compile(r"requires (the )?(a )?Xen"),
    re.compile(r"expects a pluggable device type"),
    re.compile(r"not a valid device model name"),
)
_QMP = (
    '{"execute":"qmp_capabilities"}\n'
    '{"execute":"human-monitor-command","arguments":{"command-line":"info qtree"}}\n'
    '{"execute":"quit"}\n'
)


def _run(qemu: QemuBinary, *args: str, timeout: float = 30) -> tuple[str | None, str]:
    """Start ``qemu`` paused with ``args``; return (``info qtree`` or None, stderr)."""
    argv = qemu.command(*args, "-nodefaults", "-display", "none", "-S", "-monitor", "none")
    try:
        run = subprocess.run(
            [*argv, "-qmp", "stdio"],
            input=_QMP,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **qemu.env},
        )
    except subprocess.TimeoutExpired:
        return None, f"no answer within {timeout:g} s"
    for line in run.stdout.splitlines():
        reply = json.loads(line)
        if isinstance(reply.get("return"), str):
            return reply["return"].replace("\r\n", "\n"), run.stderr
    return None, run.stderr.strip()


def _tree(qtree: str) -> list[dict[str, object]]:
    """``info qtree`` as dev nodes: {type, id, buses: [bus types], children: [nodes]}."""
    root: dict[str, object] = {"type": None, "id": "", "buses": [], "children": []}
    stack: list[tuple[int, str, dict[str, object]]] = [(-1, "dev", root)]
    lines = qtree.splitlines()
    for n, line in enumerate(lines):
        depth = len(line) - len(line.lstrip())
        text = line.strip()
        while stack[-1][0] >= depth:
            stack.pop()
        if text.startswith("bus: "):
            kind = lines[n + 1].strip().removeprefix("type ")
            owner = stack[-1][2]
            owner["buses"].append(kind)  # type: ignore[union-attr]
            stack.append((depth, "bus", owner))
        elif text.startswith("dev: "):
            m = re.match(r'dev: ([^,]+), id "(.*)"', text)
            assert m, text
            node: dict[str, object] = {"type": m[1], "id": m[2], "buses": [], "children": []}
            stack[-1][2]["children"].append(node)  # type: ignore[union-attr]
            stack.append((depth, "dev", node))
    return root["children"]  # type: ignore[return-value]


def _walk(nodes: list[dict[str, object]]):
    for node in nodes:
        yield node
        yield from _walk(node["children"])  # type: ignore[arg-type]


def _device_help(qemu: QemuBinary) -> dict[str, str | None]:
    """``-device help``: name -> bus type (None: no bus)."""
    run = subprocess.run(
        qemu.command("-device", "help"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **qemu.env},
    )
    out: dict[str, str | None] = {}
    for m in re.finditer(r'^name "([^"]+)"(?:, bus ([^,\n]+))?', run.stdout, re.M):
        out[m[1]] = m[2]
    return out


def _schema_classes(qemu: QemuBinary, machine: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = qemu.dump_vmstate(Path(tmp) / "schema.json", machine=machine)
        return sorted(k for k in json.loads(path.read_text()) if k != "vmschkmachine")


def _board(qemu: QemuBinary, machine: str, accel: str) -> tuple[set[str], set[str]] | str:
    """Device types and bus types of ``machine`` under ``accel``, or the error text."""
    qtree, err = _run(qemu, "-machine", machine, "-accel", accel)
    if qtree is None:
        return err
    nodes = list(_walk(_tree(qtree)))
    buses = {b for n in nodes for b in n["buses"]}  # type: ignore[attr-defined]
    return {str(n["type"]) for n in nodes}, _with_supertypes(buses | {"System"})


#: Bus types that are kinds of another (QOM parents): a PCI device plugs into a PCIe bus.
_BUS_PARENTS = {"PCIE": "PCI", "CXL": "PCIE", "virtio-pci-bus": "virtio-bus"}


def _with_supertypes(buses: set[str]) -> set[str]:
    out = set(buses)
    for bus in buses:
        while bus in _BUS_PARENTS:
            bus = _BUS_PARENTS[bus]
            out.add(bus)
    return out


def _instantiate(
    qemu: QemuBinary, machine: str, prefix: list[str], names: list[str], found: dict, failed: dict
) -> None:
    """Realize ``names`` together (after the provider chain ``prefix``).

    QEMU names the ``-device`` option that failed (``-device X,id=h3: why``): that device
    is recorded as failed and the rest are started again without it.
    """
    names = list(names)
    while names:
        args = ["-machine", machine, "-accel", "tcg"]
        for i, p in enumerate(prefix):
            args += ["-device", f"{p},id=p{i}"]
        for i, name in enumerate(names):
            args += ["-device", f"{name},id=h{i}"]
        qtree, err = _run(qemu, *args)
        if qtree is not None:
            break
        culprit = re.search(r"-device [^,\s]+,id=h(\d+): (.*)", err)
        if culprit is None:  # not one device's fault: each alone
            if len(names) == 1:
                failed[names[0]] = err.splitlines()[-1] if err else "no qtree"
                return
            for name in names:
                _instantiate(qemu, machine, prefix, [name], found, failed)
            return
        failed[names.pop(int(culprit[1]))] = culprit[2]
    else:
        return
    print(f"  {machine} {'+'.join(prefix)}: {len(names)} device(s) realized", file=sys.stderr)
    ours = {f"h{i}": name for i, name in enumerate(names)}
    for node in _walk(_tree(qtree)):
        name = ours.get(str(node["id"]))
        if name is None:
            continue
        inner = list(_walk(node["children"]))  # type: ignore[arg-type]
        found[name] = {
            "buses": sorted(set(node["buses"]) | {b for n in inner for b in n["buses"]}),  # type: ignore[arg-type]
            "children": sorted({str(n["type"]) for n in inner if n["id"] == ""}),
        }


def _pluggable(qemu: QemuBinary, machine: str, board_buses: set[str]) -> dict[str, object]:
    """Which ``-device`` entries can be plugged into ``machine`` (see the module docstring)."""
    catalogue = _device_help(qemu)
    offered: dict[str, list[str]] = {b: [] for b in board_buses}  # bus type -> provider chain
    found: dict[str, dict[str, list[str]]] = {}
    failed: dict[str, str] = {}
    tried: set[str] = set()
    while True:
        batch: dict[tuple[str, ...], list[str]] = {}
        for name, bus in catalogue.items():
            if name in tried or (bus is not None and bus not in offered):
                continue
            chain = tuple(offered[bus]) if bus is not None else ()
            batch.setdefault(chain, []).append(name)
            tried.add(name)
        if not batch:
            break
        for chain, names in batch.items():
            for i in range(0, len(names), 24):
                _instantiate(qemu, machine, list(chain), names[i : i + 24], found, failed)
        for name in sorted(found):
            bus = catalogue[name]
            for provided in sorted(_with_supertypes(set(found[name]["buses"]))):
                if provided not in offered:
                    offered[provided] = [*(offered[bus] if bus else []), name]
    impossible = {
        n: why for n, why in failed.items() if any(p.search(why) for p in _IMPOSSIBLE)
    }
    return {
        "machine": machine,
        "buses": {b: chain for b, chain in sorted(offered.items())},
        "devices": sorted(n for n in catalogue if n in tried and n not in impossible),
        "children": sorted({c for v in found.values() for c in v["children"]}),
        "impossible": dict(sorted(impossible.items())),
        "needs_properties": dict(sorted((n, w) for n, w in failed.items() if n not in impossible)),
        "unreachable": sorted(n for n in catalogue if n not in tried),
        "device_buses": {n: catalogue[n] for n in sorted(catalogue)},
    }


def harvest(version: str) -> dict[str, object]:
    qemu = find_qemu(version)
    described = qemu.machines()
    machines = [m for m in described if re.match(r"pc-(q35-|i440fx-)?\d", m)]
    aliases = {
        m: alias[1]
        for m, text in described.items()
        if (alias := re.search(r"\(alias of ([^)]+)\)", text)) and alias[1] in machines
    }
    boards: dict[str, dict[str, list[str]]] = {}
    errors: dict[str, str] = {}
    family_buses: dict[str, set[str]] = {"q35": set(), "i440fx": set()}
    newest = {"q35": aliases["q35"], "i440fx": aliases["pc"]}  # what the aliases name
    for machine in machines:
        family = "q35" if "q35" in machine else "i440fx"  # pc-1.x are i440fx
        per: dict[str, list[str]] = {}
        for config, spec in CONFIGS.items():
            if not spec["default"] and machine not in newest.values():
                continue  # opt-in configurations: the newest machine types only
            got = _board(qemu, machine, str(spec["accel"]))
            if isinstance(got, str):
                errors[f"{machine} {config}"] = got.splitlines()[-1] if got else "failed"
                continue
            per[config] = sorted(got[0])
            if config == "tcg":
                family_buses[family] |= got[1]
        boards[machine] = per
        print(f"{version} {machine}: {', '.join(f'{c} {len(v)}' for c, v in per.items())}", file=sys.stderr)
    pluggable = {f: _pluggable(qemu, m, family_buses[f]) for f, m in newest.items()}
    sets: list[list[str]] = []  # each distinct board once; machines name them by index
    index: dict[str, dict[str, int]] = {}
    for machine, per in boards.items():
        for config, types in per.items():
            if types not in sets:
                sets.append(types)
            index.setdefault(machine, {})[config] = sets.index(types)
    return {
        "schema_classes": _schema_classes(qemu, newest["q35"]),
        "aliases": aliases,
        "board_sets": sets,
        "boards": index,
        "board_errors": errors,
        "pluggable": pluggable,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", action="append", choices=QEMU_VERSIONS)
    args = ap.parse_args()
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data.setdefault("builds", {})
    data["made_by"] = "python scripts/harvest-machine-devices.py"
    data["configs"] = CONFIGS
    for version in args.qemu or QEMU_VERSIONS:
        data["builds"][version] = harvest(version)
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
