"""A conversion taken apart: the stream after each unit of change, and what each changed.

:func:`~miglab.compat.convert_stream` converts a whole stream at once.  To see
why each transform exists, a user needs the ladder: the source as it is
(refused by the destination), then with the machine type changed, then
without the command the destination does not know, then with each device
converted, until the destination loads it.  :func:`conversion_steps`
builds that ladder.  A *unit* is the configuration block, one command
record, or one device section; units are applied in that order (stream
order within each kind), each on top of the previous step, and each step is
a complete stream that can be saved and given to real QEMU
(:func:`judge_step`).

Units are independent: every transform of :mod:`miglab.compat` works on one
section (or on the configuration, or drops one command), so the step that
applies units 1..k holds exactly the converted records of those units and
the source's records of the others.  Each step carries the change report
entries of its unit and the byte-level difference from the step before
(:func:`miglab.analysis.diff.diff_streams`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miglab.analysis.diff import StreamDiff, diff_streams
from miglab.compat import Change, convert_stream
from miglab.stream.model import CommandRecord, Record, Section, Stream
from miglab.stream.vmdesc import refresh_vmdesc

if TYPE_CHECKING:
    from miglab.qemu import JudgeResult

__all__ = ("Step", "conversion_steps", "judge_step", "refusal")


@dataclass(frozen=True, slots=True)
class Step:
    """One rung of the ladder.

    Attributes:
        number: 0 for the unchanged source, then 1, 2, ... per unit applied.
        title: what this step applies (``machine type pc-q35-10.0 -> pc-q35-7.2``).
        changes: the change report entries of this unit (empty for step 0).
        stream: the whole stream with units 1..number applied.
        diff: what this step changed, against the step before (empty for step 0).
    """

    number: int
    title: str
    changes: tuple[Change, ...]
    stream: Stream
    diff: StreamDiff

    @property
    def guest_visible(self) -> bool:
        """True when a change of this step could be observed by the guest."""
        return any(c.guest_visible for c in self.changes)


@dataclass(slots=True)
class _Unit:
    title: str
    index: int | None  # the source record it replaces; None for the configuration
    converted: Record | None  # None: the record is dropped
    changes: list[Change]


def conversion_steps(
    stream: Stream, *, to_qemu: str, machine: str, from_qemu: str | None = None
) -> list[Step]:
    """The source, then one step per unit of the conversion (guest-visible changes allowed).

    Raises:
        CompatError: the stream cannot be converted at all (as :func:`convert_stream`).
    """
    out, report = convert_stream(
        stream, to_qemu=to_qemu, machine=machine, from_qemu=from_qemu, allow_guest_visible=True
    )
    units = _units(stream, out, list(report.changes))
    steps = [Step(0, "the source stream, unchanged", (), stream, StreamDiff((stream.machine,) * 2))]
    applied: list[_Unit] = []
    for unit in units:
        applied.append(unit)
        built = _build(stream, out, applied)
        diff = diff_streams(steps[-1].stream, built)
        steps.append(Step(len(steps), unit.title, tuple(unit.changes), built, diff))
    return steps


def _units(src: Stream, out: Stream, changes: list[Change]) -> list[_Unit]:
    """Pair source and converted records (the conversion keeps order, drops some)."""
    units: list[_Unit] = []
    if src.configuration is not out.configuration:
        # The configuration block, and the vmdesc's entry for it (rewritten with the new name).
        mine = [
            c
            for c in changes
            if c.device == "configuration"
            or (c.device == "vmdesc" and c.path.startswith("configuration/"))
        ]
        title = f"machine type {src.machine} -> {out.machine}"
        units.append(_Unit(title, None, None, mine))
    commands: list[_Unit] = []
    sections: list[_Unit] = []
    j = 0
    for i, rec in enumerate(src.records):
        nxt = out.records[j] if j < len(out.records) else None
        if isinstance(rec, CommandRecord):
            if nxt is rec:
                j += 1
                continue
            mine = [c for c in changes if c.device == "commands" and c.path == rec.name]
            commands.append(_Unit(f"command {rec.name} removed", i, None, mine))
            continue
        if isinstance(nxt, Section) and nxt.name == rec.name and nxt.kind is rec.kind:
            j += 1
            if nxt is rec:
                continue
            where = nxt.name if nxt.instance_id == 0 else f"{nxt.name}#{nxt.instance_id}"
            mine = [c for c in changes if c.section == where]
            visible = sum(c.guest_visible for c in mine)
            title = f"{rec.name}: {len(mine)} change(s)" + (
                f", {visible} guest-visible" if visible else ""
            )
            sections.append(_Unit(title, i, nxt, mine))
        else:
            mine = [c for c in changes if c.device == rec.name and c.section is None]
            sections.append(_Unit(f"section {rec.name} removed", i, None, mine))
    return units + commands + sections


def _build(src: Stream, out: Stream, applied: Sequence[_Unit]) -> Stream:
    by_index = {u.index: u for u in applied if u.index is not None}
    records: list[Record] = []
    touched: list[Section] = []
    for i, rec in enumerate(src.records):
        unit = by_index.get(i)
        if unit is None:
            records.append(rec)
        elif unit.converted is not None:
            records.append(unit.converted)
            if isinstance(unit.converted, Section):
                touched.append(unit.converted)
    config = out.configuration if any(u.index is None for u in applied) else src.configuration
    built = dataclasses.replace(
        src, records=records, configuration=config, vmdesc=copy.deepcopy(src.vmdesc)
    )
    refresh_vmdesc(built, touched)
    return built


def judge_step(
    step: Step, *, qemu: str, machine: str, recipe: Mapping[str, Any], timeout: float = 120
) -> JudgeResult:
    """Ask real QEMU ``qemu`` whether it loads the step's stream.

    ``recipe`` is the source stream's entry of ``data/manifest.json`` (its
    ``devices``, ``memory`` and ``extra_args``): the destination must be
    started like the source, or it refuses even a good stream.
    """
    from miglab.containers import save
    from miglab.qemu import find_qemu

    fd, name = tempfile.mkstemp(prefix="miglab-step-", suffix=".mig")
    os.close(fd)
    path = Path(name)
    try:
        save(dataclasses.replace(step.stream, container=None), path)
        return find_qemu(qemu).judge(
            path,
            machine=machine,
            devices=recipe.get("devices", ()),
            memory=recipe.get("memory", "32M"),
            extra_args=recipe.get("extra_args", ()),
            timeout=timeout,
        )
    finally:
        path.unlink(missing_ok=True)


def refusal(result: JudgeResult) -> str:
    """QEMU's reason for refusing a stream: its first stderr line that is no warning.

    QEMU prints the cause first (``Machine type received is 'pc-q35-10.0' and
    local is 'pc-q35-7.2'``, ``MIG_CMD 0xb unknown``) and then the generic
    ``load of migration failed``; warnings (``nic ... has no peer``) are noise.
    """
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    causes = [line for line in lines if "warning:" not in line]
    return causes[0].removeprefix("qemu-system-x86_64: ") if causes else result.status
