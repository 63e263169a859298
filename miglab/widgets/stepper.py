"""The transformation stepper: a conversion applied one unit at a time, judged by real QEMU.

::

    from miglab.widgets import TransformStepper
    TransformStepper()          # the shipped streams; pick one, a source and a destination

Step 0 is the source as it is; each further step applies one unit of the
conversion (the machine type, one command, one device section, in that
order: :func:`miglab.analysis.conversion_steps.conversion_steps`) and shows
its change report entries and the byte-level difference from the step
before, PCI config by register and bit.  "ask QEMU" loads the current step
into the real destination QEMU; "ask at every step" climbs the whole
ladder -- for the 10.0 q35 network guest going to 7.2: machine type
refused, then ``MIG_CMD 0xb unknown``, then e1000e refused, then accepted.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as w

from miglab.analysis.conversion_steps import Step, conversion_steps, judge_step, refusal
from miglab.analysis.evolution import DATA_DIR, machine_key, manifest_frame
from miglab.compat import QEMU_VERSIONS, Change, ChangeReport
from miglab.errors import MiglabError
from miglab.qemu import JudgeResult
from miglab.stream.model import Stream
from miglab.widgets._display import RunHint
from miglab.widgets._html import diff_changes_html, table_html

__all__ = ("TransformStepper", "destination_machine")

Judge = Callable[..., JudgeResult]


def destination_machine(machine: str, qemu: str) -> str:
    """The machine type to run on QEMU ``qemu``: ``machine`` itself, or for a machine newer
    than that build, its newest of the same family (``pc-q35-10.0`` on 7.2 -> ``pc-q35-7.2``)."""
    family, version = machine_key(machine)
    newest = machine_key(qemu)[1]
    if version > newest:
        return f"{family}-{qemu}"
    return machine


class TransformStepper(RunHint, w.VBox):
    """Pick a stream, a source and a destination QEMU; climb the conversion step by step.

    Args:
        streams: label -> stream path or Stream (default: the shipped streams,
            with their QEMU version and recipe from the manifest).
        stream: the label picked first.
        destination: the destination QEMU picked first.
        recipes: label -> how the source QEMU was started (``devices``,
            ``memory``, ``extra_args``, as in ``data/manifest.json``); a stream
            without one cannot be judged (the destination must match it).
        judge: the judge (default :func:`~miglab.analysis.conversion_steps.judge_step`).

    Attributes:
        stream, source, destination, step: the controls (``step`` 0 is the source).
        ask, ask_all: buttons that ask real QEMU about this step, or about every step.
        summary, current, verdict, table: HTML models of what is shown.
        steps: the ladder of the current conversion (empty when it is refused).
        report, change: every change in step order, and the current step's first.
        verdicts: step number -> QEMU's verdict, for the steps asked about.
    """

    def __init__(
        self,
        streams: Mapping[str, str | os.PathLike[str] | Stream] | None = None,
        *,
        stream: str | None = None,
        destination: str = "7.2",
        recipes: Mapping[str, Mapping[str, Any]] | None = None,
        judge: Judge = judge_step,
    ) -> None:
        qemu_of: dict[str, str] = {}
        self._recipes: dict[str, Mapping[str, Any]] = dict(recipes or {})
        if streams is None:
            man = manifest_frame()
            streams = {f: DATA_DIR / f for f in man["file"]}
            qemu_of = dict(zip(man["file"], man["qemu"], strict=True))
            for entry in json.loads((DATA_DIR / "manifest.json").read_text())["streams"]:
                self._recipes.setdefault(entry["file"], entry)  # devices, memory, extra_args
        self._sources: dict[str, str | os.PathLike[str] | Stream] = dict(streams)
        self._qemu_of = qemu_of
        self._cache: dict[str, Stream] = {}
        self._judge = judge
        self.steps: list[Step] = []
        self.verdicts: dict[int, JudgeResult] = {}
        labels = list(self._sources)
        first = stream if stream is not None else labels[0]
        self.stream = w.Dropdown(
            options=labels, value=first, description="stream", layout=w.Layout(width="420px")
        )
        self.source = w.Dropdown(
            options=QEMU_VERSIONS,
            value=qemu_of.get(first, QEMU_VERSIONS[-1]),
            description="from QEMU",
        )
        self.destination = w.Dropdown(
            options=QEMU_VERSIONS, value=destination, description="to QEMU"
        )
        self.step = w.IntSlider(min=0, max=0, value=0, description="step")
        self.play = w.Play(min=0, max=0, interval=1200, description="play")
        w.jslink((self.play, "value"), (self.step, "value"))
        self.ask = w.Button(description="ask QEMU", tooltip="load this step into real QEMU")
        self.ask_all = w.Button(description="ask at every step", tooltip="climb the whole ladder")
        self.summary = w.HTML()
        self.current = w.HTML()
        self.verdict = w.HTML()
        self.table = w.HTML(layout=w.Layout(max_height="320px", overflow="auto"))
        self.stream.observe(self._on_stream, names="value")
        for control in (self.source, self.destination):
            control.observe(self._convert, names="value")
        self.step.observe(self._render, names="value")
        self.ask.on_click(lambda _b: self.judge())
        self.ask_all.on_click(lambda _b: self.judge_all())
        super().__init__(
            [
                w.HBox([self.stream, self.source, self.destination]),
                w.HBox([self.play, self.step, self.ask, self.ask_all]),
                self.summary,
                self.current,
                self.verdict,
                self.table,
            ]
        )
        self.add_class("miglab-stepper")
        self._convert()

    def add_stream(
        self, label: str, stream: Stream, *, recipe: Mapping[str, Any] | None = None
    ) -> None:
        """Offer another stream (one a :class:`~miglab.widgets.FileOpener` opened) and pick it."""
        self._sources[label] = stream
        self._cache.pop(label, None)
        if recipe is not None:
            self._recipes[label] = recipe
        self.stream.options = [*(o for o in self.stream.options if o != label), label]
        self.stream.value = label

    @property
    def machine(self) -> str:
        """The destination machine type for the current stream and destination."""
        stream = self._load(self.stream.value)
        return destination_machine(stream.machine, self.destination.value) if stream.machine else ""

    def _load(self, label: str) -> Stream:
        if label not in self._cache:
            from miglab.containers import load

            src = self._sources[label]
            self._cache[label] = src if isinstance(src, Stream) else load(Path(src))
        return self._cache[label]

    def _on_stream(self, _change: object = None) -> None:
        qemu = self._qemu_of.get(self.stream.value)
        if qemu is not None and qemu != self.source.value:
            self.source.value = qemu  # triggers _convert
        else:
            self._convert()

    def _convert(self, _change: object = None) -> None:
        stream = self._load(self.stream.value)
        src, dst = self.source.value, self.destination.value
        self.verdicts = {}
        try:
            self.steps = conversion_steps(stream, from_qemu=src, to_qemu=dst, machine=self.machine)
        except MiglabError as exc:
            self.steps = []
            self.summary.value = f"<b>cannot convert</b>: {html.escape(str(exc))}"
        else:
            changes = sum(len(s.changes) for s in self.steps)
            visible = sum(c.guest_visible for s in self.steps for c in s.changes)
            self.summary.value = (
                f"QEMU {src} {html.escape(stream.machine or '?')} → QEMU {dst} "
                f"{html.escape(self.machine)}: <b>{changes} change(s) in "
                f"{len(self.steps) - 1} step(s)</b>, {visible} guest-visible"
            )
        can_judge = bool(self.steps) and self.stream.value in self._recipes
        self.ask.disabled = self.ask_all.disabled = not can_judge
        last = max(len(self.steps) - 1, 0)
        self.step.unobserve(self._render, names="value")
        self.step.value = 0
        self.step.max = self.play.max = last
        self.step.observe(self._render, names="value")
        self._render()

    @property
    def report(self) -> ChangeReport:
        """Every change of the conversion, in step order (empty when refused)."""
        return ChangeReport(tuple(c for step in self.steps for c in step.changes))

    @property
    def change(self) -> Change | None:
        """The first change the current step applies (None for step 0 or a refusal)."""
        step = self.current_step
        return step.changes[0] if step is not None and step.changes else None

    @property
    def current_step(self) -> Step | None:
        """The step the slider is on (None when the conversion is refused)."""
        return self.steps[self.step.value] if self.steps else None

    def judge(self, number: int | None = None) -> JudgeResult | None:
        """Ask the destination QEMU whether it loads step ``number`` (default: the current one)."""
        if not self.steps or self.stream.value not in self._recipes:
            return None
        n = self.step.value if number is None else number
        if n not in self.verdicts:
            self.verdict.value = f"<i>asking QEMU {self.destination.value} about step {n}…</i>"
            self.verdicts[n] = self._judge(
                self.steps[n],
                qemu=self.destination.value,
                machine=self.machine,
                recipe=self._recipes[self.stream.value],
            )
        self._render()
        return self.verdicts[n]

    def judge_all(self) -> dict[int, JudgeResult]:
        """Ask about every step, from the source up (the whole ladder)."""
        for step in self.steps:
            self.judge(step.number)
        return self.verdicts

    def _verdict_text(self, n: int) -> str:
        v = self.verdicts.get(n)
        if v is None:
            return ""
        return "accepted" if v.accepted else f"refused: {refusal(v)}"

    def _render(self, _change: object = None) -> None:
        step = self.current_step
        if step is None:
            self.current.value = "<i>nothing to step through: the conversion is refused</i>"
            self.verdict.value = self.table.value = ""
            return
        total = len(self.steps) - 1
        if total == 0:
            head = "<i>no step needed: the destination reads this stream as it is</i>"
        else:
            head = f"<b>step {step.number} of {total}</b>: {html.escape(step.title)}"
        parts = [f"<div class='miglab-step'>{head}"]
        for c in step.changes:
            colour = "#c0392b" if c.guest_visible else "#27ae60"
            where = f"{c.device}:{c.path}" + (f" → {c.new_path}" if c.new_path else "")
            parts.append(
                f"<br><span style='background:{colour};color:#fff;padding:0 4px'>"
                f"{html.escape(c.classification)}</span> <b>{html.escape(c.action)}</b> "
                f"<code>{html.escape(where)}</code> <i>{html.escape(c.reason)}</i>"
            )
        if step.number:
            parts.append("<br>" + diff_changes_html(step.diff))
        self.current.value = "".join(parts) + "</div>"
        text = self._verdict_text(step.number)
        self.verdict.value = (
            f"<div class='miglab-verdict'>QEMU {self.destination.value} at step {step.number}: "
            f"<b>{html.escape(text)}</b></div>"
            if text
            else ""
        )
        rows = [
            (
                s.number,
                s.title,
                len(s.changes),
                "yes" if s.guest_visible else "",
                self._verdict_text(s.number)[:90],
            )
            for s in self.steps
        ]
        self.table.value = table_html(
            ("step", "applies", "changes", "guest-visible", f"QEMU {self.destination.value}"),
            rows,
            marked=step.number,
            css_class="miglab-steps",
        )
