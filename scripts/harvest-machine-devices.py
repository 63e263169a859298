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

Regenerate with ``python scripts/harvest-machine-devices.py [--qemu 7.2 ...]`` (5 to 15
minutes per build on a loaded 2-core machine; builds can run in parallel with ``--out``
files joined by ``--merge``).  Not covered: machine options marked experimental
(``x-south-bridge``), KVM's Xen emulation (tried, recorded in ``board_errors``: this host's
kernel lacks it) and Hyper-V's ``vmbus`` (its bridge needs a kernel with Hyper-V SynIC).
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

from miglab.knowledge import decode_knowledge  # noqa: E402
from miglab.knowledge.hardware import MachineHarvest  # noqa: E402
from miglab.qemu import QEMU_VERSIONS, QemuBinary, find_qemu  # noqa: E402

OUT = ROOT / "miglab" / "knowledge" / "machine-devices.json"
#: Accelerator configurations a board is started under; ``default`` ones are what
#: ``--machine`` assumes, the others are opted into by name.
CONFIGS: dict[str, dict[str, object]] = {
    "tcg": {"args": ["-accel", "tcg"], "default": True},
    "kvm": {"args": ["-accel", "kvm"], "default": True},
    "kvm-split-irqchip": {"args": ["-accel", "kvm,kernel-irqchip=split"], "default": True},
    # UEFI firmware in flash (OVMF): the board then has cfi.pflash01 devices.
    "tcg-uefi-flash": {
        "args": [
            "-accel",
            "tcg",
            "-blockdev",
            "null-co,node-name=pf0,size=4194304",
            "-machine",
            "pflash0=pf0",
        ],
        "default": True,
    },
    "kvm-xen-emulation": {
        "args": ["-accel", "kvm,kernel-irqchip=split,xen-version=0x4000a"],
        "default": False,
    },
}
#: Realize errors that say the device cannot be on this machine at all.
_IMPOSSIBLE = (
    re.compile(r"cannot be handled by this machine"),
    re.compile(r"No '[^']+' bus found"),
    re.compile(r"requires (the )?(a )?Xen"),
    re.compile(r"expects a (pluggable|dynamic sysbus) device type"),
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


def _qom_children(qemu: QemuBinary, types: list[str]) -> dict[str, list[str]]:
    """Type -> the device types its instances create as QOM children (``child<T>``).

    ``qom-list-properties`` makes an instance without realizing it, so it needs none of
    the properties a realize does (``virtio-blk-pci`` shows ``child<virtio-blk-device>``).
    """
    out: dict[str, list[str]] = {}
    todo = list(types)
    while todo:
        lines = ['{"execute":"qmp_capabilities"}']
        lines += [
            json.dumps({"execute": "qom-list-properties", "arguments": {"typename": t}, "id": t})
            for t in todo
        ]
        lines.append('{"execute":"quit"}')
        argv = qemu.command(
            "-machine", "none", "-nodefaults", "-display", "none", "-S", "-monitor", "none"
        )
        run = subprocess.run(
            [*argv, "-qmp", "stdio"],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **qemu.env},
        )
        answered = set()
        for line in run.stdout.splitlines():
            reply = json.loads(line)
            if reply.get("id") in todo:
                answered.add(reply["id"])
                props = reply.get("return", [])
                out[reply["id"]] = sorted(
                    {p["type"][6:-1] for p in props if p["type"].startswith("child<")}
                )
        rest = [t for t in todo if t not in answered]
        if rest and rest[0] == todo[0]:  # QEMU died on this type: skip it
            out[rest[0]] = []
            rest = rest[1:]
        todo = rest
    return out


def _schema_classes(qemu: QemuBinary, machine: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = qemu.dump_vmstate(Path(tmp) / "schema.json", machine=machine)
        return sorted(k for k in json.loads(path.read_text()) if k != "vmschkmachine")


def _board(qemu: QemuBinary, machine: str, config: list[str]) -> tuple[set[str], set[str]] | str:
    """Device types and bus types of ``machine`` under ``config``, or the error text."""
    qtree, err = _run(qemu, "-machine", machine, *config)
    if qtree is None:
        return err
    nodes = list(_walk(_tree(qtree)))
    buses = {b for n in nodes for b in n["buses"]}  # type: ignore[attr-defined]
    return {str(n["type"]) for n in nodes}, _with_supertypes(buses | {"System"})


#: Bus types that are kinds of another (QOM parents): a PCI device plugs into a PCIe bus.
_BUS_PARENTS = {
    "PCIE": "PCI",
    "CXL": "PCIE",
    "virtio-pci-bus": "virtio-bus",
    "sdhci-bus": "sd-bus",
}
#: What a device that failed for want of a backend gets on its second try, alone: the
#: backends (a null block node, a silent audio backend, a null chardev) and the property
#: its error asked for.
_BACKENDS = (
    "-blockdev",
    "null-co,node-name=nd0",
    "-audiodev",
    "none,id=au0",
    "-chardev",
    "null,id=ch0",
)
_ASKED = (
    (re.compile(r"drive"), "drive=nd0"),
    (re.compile(r"audio"), "audiodev=au0"),
    (re.compile(r"chardev|char device"), "chardev=ch0"),
    (re.compile(r"serial"), "serial=miglab"),
    (re.compile(r"chassis slot"), "chassis=9"),
)
#: Properties a device needs whose error does not say which (pxb's inner bridge takes its
#: chassis from ``bus_nr``; a PCI bridge's is ``chassis_nr``).
_NEEDS = {
    "pxb": "bus_nr=9",
    "pxb-pcie": "bus_nr=9",
    "pci-bridge": "chassis_nr=9",
    "pci-bridge-seat": "chassis_nr=9",
}


def _with_supertypes(buses: set[str]) -> set[str]:
    out = set(buses)
    for bus in buses:
        while bus in _BUS_PARENTS:
            bus = _BUS_PARENTS[bus]
            out.add(bus)
    return out


def _instantiate(
    qemu: QemuBinary,
    machine: str,
    prefix: list[str],
    names: list[str],
    found: dict,
    failed: dict,
    extra: tuple[str, ...] = _BACKENDS,
) -> None:
    """Realize ``names`` together (after the provider chain ``prefix``).

    QEMU names the ``-device`` option that failed (``-device X,id=h3: why``): that device
    is recorded as failed and the rest are started again without it.
    """
    names = list(names)
    while names:
        args = ["-machine", machine, "-accel", "tcg", *extra]
        for i, p in enumerate(prefix):
            args += ["-device", f"{p},id=p{i}"]
        for i, name in enumerate(names):
            args += ["-device", f"{name},id=h{i}"]
        qtree, err = _run(qemu, *args)
        if qtree is not None:
            break
        culprit = next(
            (
                m
                for m in re.finditer(r"-device [^,\s]+,id=h(\d+)[^:]*: (.*)", err)
                if not m[2].lower().startswith("warning")
            ),
            None,
        )
        if culprit is None:  # not one device's fault: each alone
            if len(names) == 1:
                failed[names[0]] = err.splitlines()[-1] if err else "no qtree"
                return
            for name in names:
                _instantiate(qemu, machine, prefix, [name], found, failed, extra)
            return
        failed[names.pop(int(culprit[1]))] = culprit[2]
    else:
        return
    print(f"  {machine} {'+'.join(prefix)}: {len(names)} device(s) realized", file=sys.stderr)
    ours = {f"h{i}": name for i, name in enumerate(names)}
    # What realize created besides (a pxb's pxb-host sits on the system bus, not under it).
    created = {str(n["type"]) for n in _walk(_tree(qtree)) if n["id"] == ""}
    found.setdefault("", {"buses": [], "children": []})
    found[""]["children"] = sorted(set(found[""]["children"]) | created)
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
    retried: set[str] = set()
    specs: dict[str, str] = {}  # a device that needed properties: how it realized

    def offer() -> None:
        # xHCI takes USB devices of every speed (EHCI refuses full-speed ones).
        for name in sorted(found, key=lambda n: (n != "qemu-xhci", n)):
            if not name:  # what realizes created, not one device's
                continue
            bus = catalogue[name]
            for provided in sorted(_with_supertypes(set(found[name]["buses"]))):
                if provided not in offered:
                    offered[provided] = [*(offered[bus] if bus else []), specs.get(name, name)]

    while True:
        batch: dict[tuple[str, ...], list[str]] = {}
        for name, bus in catalogue.items():
            if name.endswith("-cpu"):  # CPU models: no vmsd of their own here, no bus
                continue
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

        offer()
        for name in sorted(set(failed) - set(retried)):
            retried.add(name)
            props = [arg for pattern, arg in _ASKED if pattern.search(failed[name])]
            props += [_NEEDS[name]] if name in _NEEDS else []
            if not props or any(p.search(failed[name]) for p in _IMPOSSIBLE):
                continue
            bus = catalogue[name]
            chain = list(offered[bus]) if bus is not None else []
            again: dict[str, str] = {}
            _instantiate(qemu, machine, chain, [",".join([name, *props])], found, again)
            spec = ",".join([name, *props])
            if spec in found:
                found[name] = found.pop(spec)
                specs[name] = spec
                del failed[name]
        offer()
    impossible = {n: why for n, why in failed.items() if any(p.search(why) for p in _IMPOSSIBLE)}
    possible = sorted(n for n in catalogue if n in tried and n not in impossible)
    composed = _qom_children(qemu, possible)
    return {
        "machine": machine,
        "buses": {b: chain for b, chain in sorted(offered.items())},
        "devices": possible,
        "children": sorted(
            {c for v in found.values() for c in v["children"]}
            | {c for v in composed.values() for c in v}
        ),
        "impossible": dict(sorted(impossible.items())),
        "needs_properties": dict(sorted((n, w) for n, w in failed.items() if n not in impossible)),
        "unreachable": sorted(n for n in catalogue if n not in tried and not n.endswith("-cpu")),
        "device_buses": {n: catalogue[n] for n in sorted(catalogue)},
    }  # main() drops device_buses before writing (_classify)


def _classify(plug: dict) -> None:
    """Move the failures ``_IMPOSSIBLE`` matches from ``needs_properties`` out of ``devices``."""
    for name, why in list(plug["needs_properties"].items()):
        if any(p.search(why) for p in _IMPOSSIBLE):
            plug["impossible"][name] = plug["needs_properties"].pop(name)
    plug["devices"] = [n for n in plug["devices"] if n not in plug["impossible"]]
    plug["impossible"] = dict(sorted(plug["impossible"].items()))
    plug.pop("device_buses", None)  # what -device help said, only needed while harvesting


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
            got = _board(qemu, machine, list(spec["args"]))  # type: ignore[call-overload]
            if isinstance(got, str):
                errors[f"{machine} {config}"] = got.splitlines()[-1] if got else "failed"
                continue
            per[config] = sorted(got[0])
            if config == "tcg":
                family_buses[family] |= got[1]
        boards[machine] = per
        print(
            f"{version} {machine}: {', '.join(f'{c} {len(v)}' for c, v in per.items())}",
            file=sys.stderr,
        )
    pluggable = {f: _pluggable(qemu, m, family_buses[f]) for f, m in newest.items()}
    sets: list[list[str]] = []  # each distinct board once; machines name them by index
    index: dict[str, dict[str, int]] = {}
    for machine, per in boards.items():
        for config, types in per.items():
            if types not in sets:
                sets.append(types)
            index.setdefault(machine, {})[config] = sets.index(types)
    classes = _schema_classes(qemu, newest["q35"])
    for plug in pluggable.values():  # only classes a schema can name matter as children
        plug["children"] = [c for c in plug["children"] if c in classes]  # type: ignore[index,union-attr]
    return {
        "schema_classes": classes,
        "aliases": aliases,
        "board_sets": sets,
        "boards": index,
        "board_errors": errors,
        "pluggable": pluggable,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", action="append", choices=QEMU_VERSIONS)
    ap.add_argument("--out", type=Path, default=OUT, help="merge into this file")
    ap.add_argument("--merge", type=Path, action="append", default=[], help="take builds from")
    ap.add_argument(
        "--reclassify", action="store_true", help="only re-apply the failure rules to the file"
    )
    args = ap.parse_args()
    out = args.out
    data = json.loads(out.read_text()) if out.exists() else {}
    for other in args.merge:
        data.setdefault("builds", {}).update(json.loads(other.read_text())["builds"])
    data["made_by"] = "python scripts/harvest-machine-devices.py"
    data["configs"] = CONFIGS
    builds = data.setdefault("builds", {})
    if not args.reclassify and not args.merge:
        for version in args.qemu or QEMU_VERSIONS:
            builds[version] = harvest(version)
    for build in builds.values():
        for plug in build["pluggable"].values():
            _classify(plug)
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    decode_knowledge(out.name, text, MachineHarvest)  # what miglab will read, checked first
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
