"""Transforms between two QEMU builds and two machine generations, and whole-stream conversion.

The knowledge lives in ``miglab/knowledge/compat-qemu.json`` (learned by diffing streams of
the same device set made by QEMU 7.2 and 10.0, and by reading the destination's refusals).
What differs has two sources, and the transforms are keyed on each:

* the **QEMU build** (versions ``7.2``, ``10.0``): what a build's code writes whatever the
  machine type — field renames and layouts (hpet, globalstate, e1000e flags), which commands
  it knows;
* the **machine type** (generations ``machine:7.2`` = every machine up to pc-*-7.2,
  ``machine:10.0`` = pc-*-10.0): what hw_compat properties make devices do — read-only PCI
  config bits, e1000e's ``timadj``, virtio-balloon's MSI-X (:mod:`miglab.compat.virtio_rules`).
  QEMU 10.0 running pc-q35-7.2 behaves like 7.2 here, so a conversion that keeps its machine
  type runs none of these.

The transforms (the knowledge file's edit lists and the PCI rule,
:mod:`miglab.compat.qemu_transforms`, and the virtio rules) are in the registry
:func:`~miglab.compat.defaults.default_registry` builds, which a conversion uses unless given
another.  :func:`convert_stream` converts a whole stream: per device section it runs the build plan and, when the machine generation changes,
the machine plan, and for a PCIe port the slot-status bits that depend on whether the stream
has a device behind it (:mod:`miglab.compat.pci_bits`); it renames the machine in the
configuration block, drops commands the destination does not know, and rewrites the vmdesc
entries of changed sections.  Changes a guest could observe are refused unless
``allow_guest_visible``.  Builds, machine types and generations are read from the knowledge
file by :mod:`miglab.compat.qemu_knowledge`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection

from miglab.compat.defaults import default_registry
from miglab.compat.pci_bits import occupied_ports, slot_bits_fn, slot_devices
from miglab.compat.qemu_knowledge import (
    MACHINE_GENERATIONS,
    QEMU_VERSIONS,
    check_machine,
    machine_generation,
    parse_machine,
    qemu_of_machine,
)
from miglab.compat.registry import Registry, Transform
from miglab.compat.report import Change, ChangeReport, vmdesc_entry_changes
from miglab.compat.schema_driven import SchemaDriven
from miglab.compat.virtio_rules import vector_option
from miglab.errors import CompatError
from miglab.knowledge import compat_qemu
from miglab.stream.configuration import CONFIGURATION, machine_of
from miglab.stream.model import CommandRecord, Record, Section, Stream
from miglab.stream.vmdesc import refresh_vmdesc
from miglab.vmstate.filters import Filters
from miglab.vmstate.schema import SchemaSource
from miglab.vmstate.state import VMState

# The builds and machine generations are part of this module's API (miglab.compat, the CLI's
# --from-qemu/--to-qemu choices), so they are importable from here too.
__all__ = (
    "MACHINE_GENERATIONS",
    "QEMU_VERSIONS",
    "Conversion",
    "convert_stream",
    "machine_generation",
    "qemu_of_machine",
)


# --- whole streams -------------------------------------------------------------------------
def convert_stream(
    stream: Stream,
    *,
    to_qemu: str,
    machine: str,
    from_qemu: str | None = None,
    allow_guest_visible: bool = False,
    keep_layouts: bool = True,
    registry: Registry | None = None,
    schemas: tuple[SchemaSource, SchemaSource] | None = None,
    filters: Filters | None = None,
) -> tuple[Stream, ChangeReport]:
    """Convert ``stream`` for QEMU ``to_qemu`` running ``machine``.

    Every device section runs the plan between the two builds and, when the machine
    generation changes (pc-q35-10.0 -> pc-q35-7.2), the plan between the two generations;
    keeping the machine type (QEMU 10.0 on pc-q35-7.2 -> QEMU 7.2 on pc-q35-7.2) leaves what
    the machine type decides — read-only PCI config bits, MSI-X layouts — alone.

    Args:
        stream: the source stream (left unchanged).
        to_qemu: destination QEMU version (``"7.2"``, ``"10.0"``).
        machine: destination machine type (written to the configuration block); one
            ``to_qemu`` has, of the stream's machine family.
        from_qemu: source QEMU version; it always wins over the machine name, from which it
            is read by default (only a build's newest machine names its build).
        allow_guest_visible: accept changes the guest could observe.
        keep_layouts: where a virtio device has another MSI-X vector count on the destination's
            machine type and the destination build's device takes a ``vectors`` property,
            leave the device alone and report ``-global DEV.vectors=N`` in the report's
            ``options`` (the guest keeps its view; the destination must be started with
            them).  False: convert the device's state to the destination's layout instead
            (guest-visible; refused when the guest's driver enabled the MSI-X it loses).
        registry: transforms to use (default: a fresh :func:`~miglab.compat.defaults.default_registry`).
        schemas: the source and destination ``-dump-vmstate`` schemas; when given, what the
            transforms left different from the destination's schema is converted by
            :class:`~miglab.compat.schema_driven.SchemaDriven` (unknown subsections and fields
            dropped, missing fields zero-filled, versions and devices checked).
        filters: marshal/unmarshal filters (:mod:`miglab.vmstate.filters`): each device
            state runs through the unmarshal ones before the transforms and the marshal ones
            after; a state they change gets its vmdesc entry rebuilt, as a transformed one.

    Returns:
        The new stream and the report of every change.

    Raises:
        CompatError: unknown QEMU or machine, a change of machine family, no plan for a
            device, or guest-visible changes without permission (the message lists them).
    """
    conversion = Conversion(
        source_machine=stream.machine,
        to_qemu=to_qemu,
        machine=machine,
        from_qemu=from_qemu,
        allow_guest_visible=allow_guest_visible,
        keep_layouts=keep_layouts,
        registry=registry,
        schemas=schemas,
        occupied_ports=occupied_ports(stream),
        filters=filters,
    )
    records = [new for rec in stream.records if (new := conversion.record(rec)) is not None]
    config = conversion.configuration(stream.configuration)
    out = dataclasses.replace(
        stream, records=records, configuration=config, vmdesc=json.loads(json.dumps(stream.vmdesc))
    )
    conversion.refresh_vmdesc(out)
    report = conversion.report()
    conversion.check()
    return out, report


class Conversion:
    """One conversion for QEMU ``to_qemu`` running ``machine``, done record by record.

    :func:`convert_stream` feeds it a loaded stream's records; the live proxy
    (:mod:`miglab.live.proxy`) feeds it each record as it arrives from the source QEMU, so
    files and live migrations are converted by the same code.  The arguments are those of
    :func:`convert_stream`; ``source_machine`` is the stream's machine type (its
    configuration block's name; None for machines that send none).  ``occupied_ports``:
    the bus paths of the PCI bridges a device sits behind, which a port's slot status
    depends on (None in a live stream, which sends a port before what is behind it).
    ``filters``: as for :func:`convert_stream`, on every device record the proxy forwards too.

    Raises:
        CompatError: unknown QEMU or machine, or a change of machine family.
    """

    def __init__(
        self,
        *,
        source_machine: str | None,
        to_qemu: str,
        machine: str,
        from_qemu: str | None = None,
        allow_guest_visible: bool = False,
        keep_layouts: bool = True,
        registry: Registry | None = None,
        schemas: tuple[SchemaSource, SchemaSource] | None = None,
        occupied_ports: Collection[str] | None = None,
        filters: Filters | None = None,
    ) -> None:
        for qemu in (to_qemu, from_qemu):
            if qemu is not None and qemu not in QEMU_VERSIONS:
                raise CompatError(f"unknown QEMU {qemu!r}; known: {QEMU_VERSIONS}")
        check_machine(to_qemu, machine, "machine")
        self.to_qemu = to_qemu
        self.machine = machine
        self.source_machine = source_machine
        self.src = from_qemu or qemu_of_machine(source_machine or "")
        self.allow_guest_visible = allow_guest_visible
        self.keep_layouts = keep_layouts
        self.registry = registry if registry is not None else default_registry()
        self.generic = SchemaDriven(*schemas) if schemas is not None else None
        self.generations = _generations(source_machine, self.src, machine)
        self.changes: list[Change] = []
        self.options: list[str] = []
        #: Sections whose state changed (their vmdesc entries must be rebuilt).
        self.touched: list[Section] = []
        self._counts: dict[str, int] = {}
        #: Bus paths of the PCI bridges with a device behind them (None: not known).
        self.occupied_ports = occupied_ports
        self.filters = filters if filters is not None else Filters()

    def record(self, rec: Record) -> Record | None:
        """The record to send instead of ``rec`` (``rec`` itself if unchanged), or None to drop it."""
        to_qemu = self.to_qemu
        if isinstance(rec, Section) and rec.kind.has_full_header:
            kept = _section_rules(rec, self.src, to_qemu, self._counts, self.changes)
            if kept is None:
                return None
            rec = kept
        if isinstance(rec, CommandRecord) and rec.command > compat_qemu().qemu[to_qemu].max_command:
            self.changes.append(
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
            return None
        if isinstance(rec, Section) and isinstance(rec.payload, VMState):
            rec = self._device(rec)
        return rec

    def _device(self, rec: Section) -> Section:
        original = rec.payload
        assert isinstance(original, VMState)
        reg, generations = self.registry, self.generations
        name = original.desc.name
        incoming = self.filters.unmarshal_state(original)
        states, report = reg.plan(name, self.src, self.to_qemu).run([incoming])
        if generations is not None:
            machine_plan = reg.plan(name, *generations)
            option = (
                vector_option(states[0], generations[1], self.to_qemu)
                if self.keep_layouts
                else None
            )
            if option is not None:  # the destination keeps the layout: no layout steps
                self.options += option
                machine_plan = dataclasses.replace(
                    machine_plan, steps=tuple(t for t in machine_plan.steps if t.device != name)
                )
            states, more = machine_plan.run(states)
            report += more
            if name in slot_devices():  # a port: its slot status depends on what is behind it
                states, more = self._slot_status(rec, name, states, generations)
                report += more
        if self.generic is not None:
            states, more = self.generic.conform(rec.name, states)
            report += more
        if report.changes and len(states) != 1:
            raise CompatError("a stream section must stay one device", path=rec.name)
        out = self.filters.marshal_state(states[0])
        filtered = incoming is not original or out is not states[0]
        if report.changes or (filtered and out != original):
            rec = dataclasses.replace(rec, payload=out, version_id=out.version_id)
            self.touched.append(rec)
            where = rec.name if rec.instance_id == 0 else f"{rec.name}#{rec.instance_id}"
            self.changes += [dataclasses.replace(c, section=where) for c in report.changes]
        return rec

    def _slot_status(
        self, rec: Section, name: str, states: list[VMState], generations: tuple[str, str]
    ) -> tuple[list[VMState], ChangeReport]:
        """Apply the port's slot-status rules, knowing whether a device is behind it.

        A live stream sends a port before the devices behind it, so there
        ``occupied_ports`` is None: the rules are applied both ways, and a port
        whose result depends on it is refused rather than guessed.
        """
        bus = rec.name.split("/", 1)[0]
        if self.occupied_ports is not None:
            occupied = bus in self.occupied_ports
            return Transform(name, *generations, slot_bits_fn(generations[1], occupied))(states)
        both = [
            Transform(name, *generations, slot_bits_fn(generations[1], occupied))(states)
            for occupied in (False, True)
        ]
        if both[0][0] != both[1][0]:
            raise CompatError(
                f"the slot status of {bus} on {self.machine} depends on whether a device is "
                "behind the port, which a live stream does not say before the port's state; "
                "convert the saved stream instead",
                path=rec.name,
            )
        return both[0]

    def configuration(self, config: VMState | None) -> VMState | None:
        """The configuration block to send: the destination's machine type."""
        machine = self.machine
        if config is None or machine_of(config) == machine:
            return config
        raw = machine.encode()
        self.changes.append(
            Change(
                "changed",
                "configuration",
                "name",
                machine_of(config),
                machine,
                "safe",
                "destination machine type (the device set is converted device by device)",
            )
        )
        return VMState(
            CONFIGURATION,
            config.version_id,
            {**config.fields, "len": len(raw), "name": raw},
            dict(config.subsections),
        )

    def refresh_vmdesc(self, stream: Stream) -> None:
        """Rewrite the vmdesc of ``stream`` (the converted sections and configuration block)
        for the sections converted so far, and report what its ``configuration`` entry changed.
        """
        before = stream.vmdesc.get("configuration") if stream.vmdesc is not None else None
        refresh_vmdesc(stream, self.touched)  # replaces the entry: ``before`` stays as it was
        after = stream.vmdesc.get("configuration") if stream.vmdesc is not None else None
        reason = "the vmdesc describes the configuration block with the new machine name"
        self.changes.extend(vmdesc_entry_changes("configuration", before, after, reason))

    def report(self) -> ChangeReport:
        """Every change so far, and the destination options they need."""
        return ChangeReport(tuple(self.changes), tuple(self.options))

    def check(self) -> None:
        """Refuse guest-visible changes unless they were allowed.

        Raises:
            CompatError: the message lists the guest-visible changes.
        """
        report = self.report()
        if report.guest_visible and not self.allow_guest_visible:
            listed = "; ".join(f"{c.device}:{c.path}" for c in report.guest_visible)
            raise CompatError(
                f"{len(report.guest_visible)} guest-visible change(s) refused "
                f"(allow them explicitly): {listed}"
            )


def _section_rules(
    rec: Section, src: str, dst: str, counts: dict[str, int], changes: list[Change]
) -> Section | None:
    """Whole-section rules: drop a section ``dst`` does not know (None), renumber instances."""
    for rule in compat_qemu().sections.rules:
        if rec.name == rule.idstr and dst not in rule.qemu:
            payload = rec.payload
            if not isinstance(payload, VMState) or payload.fields or payload.subsections:
                raise CompatError(
                    f"QEMU {dst} has no section {rec.name!r} and this one carries state",
                    path=rec.name,
                )
            changes.append(
                Change("removed", rec.name, "", payload, None, "safe",
                       f"QEMU {dst} has no such section; it is empty ({rule.source})")
            )  # fmt: skip
            return None
    numbered = {q: rec.name in compat_qemu().qemu[q].numbered_instances for q in (src, dst)}
    if numbered[src] == numbered[dst]:
        return rec
    nth = counts.get(rec.name, 0)
    counts[rec.name] = nth + 1
    want = nth if numbered[dst] else 0
    if want == rec.instance_id:
        return rec
    changes.append(
        Change("changed", rec.name, "instance_id", rec.instance_id, want, "safe",
               f"QEMU {dst} numbers {rec.name!r} sections {'0, 1, ...' if numbered[dst] else 'all 0'}"
               f" ({compat_qemu().numbered_instances_source})", section=rec.name)
    )  # fmt: skip
    return dataclasses.replace(rec, instance_id=want)


def _generations(source: str | None, src_qemu: str, machine: str) -> tuple[str, str] | None:
    """The (source, destination) machine generations, or None when they are the same.

    Raises:
        CompatError: a source machine its build does not have, a change of machine family,
            or a machine change involving a machine of no known generation.
    """
    if source is not None:
        check_machine(src_qemu, source, "configuration/name")
        if parse_machine(source)[0] != parse_machine(machine)[0]:
            raise CompatError(
                f"cannot change the machine family ({source!r} -> {machine!r}): "
                "the chipsets have different devices",
                path="configuration/name",
            )
        if source == machine:
            return None
    a, b = machine_generation(source), machine_generation(machine)
    if a is None or b is None:
        unknown = source if a is None else machine
        raise CompatError(
            f"miglab does not know how devices behave on machine {unknown!r} (known "
            f"generations: {', '.join(MACHINE_GENERATIONS)}); keep the machine type",
            path="configuration/name",
        )
    return None if a == b else (a, b)
