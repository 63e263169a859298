"""The transformation stepper: convert a stream for another QEMU, one change at a time.

::

    from miglab.widgets import TransformStepper
    TransformStepper()          # the shipped streams; pick one, a source and a destination
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path

import ipywidgets as w

from miglab.analysis.evolution import DATA_DIR, machine_key, manifest_frame
from miglab.compat import QEMU_VERSIONS, Change, ChangeReport, convert_stream
from miglab.errors import MiglabError
from miglab.stream.model import Stream
from miglab.stream.reader import load
from miglab.widgets._html import diff_html, short, table_html

__all__ = ("TransformStepper", "destination_machine")

ALL = "(all devices)"


def destination_machine(machine: str, qemu: str) -> str:
    """The machine type to run on QEMU ``qemu``: ``machine`` itself, or for a machine newer
    than that build, its newest of the same family (``pc-q35-10.0`` on 7.2 -> ``pc-q35-7.2``)."""
    family, version = machine_key(machine)
    newest = machine_key(qemu)[1]
    if version > newest:
        return f"{family}-{qemu}"
    return machine


class TransformStepper(w.VBox):
    """Pick a stream, a source and destination QEMU; step through every change.

    The stream is converted with :func:`miglab.compat.convert_stream`
    (guest-visible changes allowed, and flagged), then each
    :class:`~miglab.compat.Change` of the report is one step: the slider (or
    the play button) moves through them, the current one is shown with the
    characters that differ highlighted, and the table of all changes marks
    its row.  The device dropdown narrows the steps to one device.

    Args:
        streams: label -> stream path or Stream (default: the shipped streams,
            with their QEMU version from the manifest).
        stream: the label picked first.
        destination: the destination QEMU picked first.

    Attributes:
        stream, source, destination, device, step: the controls.
        summary, current, table: HTML models of what is shown.
        report: the ChangeReport of the current conversion.
    """

    def __init__(
        self,
        streams: Mapping[str, str | os.PathLike[str] | Stream] | None = None,
        *,
        stream: str | None = None,
        destination: str = "7.2",
    ) -> None:
        qemu_of: dict[str, str] = {}
        if streams is None:
            man = manifest_frame()
            streams = {f: DATA_DIR / f for f in man["file"]}
            qemu_of = dict(zip(man["file"], man["qemu"], strict=True))
        self._sources = dict(streams)
        self._qemu_of = qemu_of
        self._cache: dict[str, Stream] = {}
        labels = list(self._sources)
        first = stream if stream is not None else labels[0]
        self.report = ChangeReport()
        self._steps: list[Change] = []
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
        self.device = w.Dropdown(options=[ALL], value=ALL, description="device")
        self.step = w.IntSlider(min=0, max=0, value=0, description="change")
        self.play = w.Play(min=0, max=0, interval=800, description="play")
        w.jslink((self.play, "value"), (self.step, "value"))
        self.summary = w.HTML()
        self.current = w.HTML()
        self.table = w.HTML(layout=w.Layout(max_height="300px", overflow="auto"))
        self.stream.observe(self._on_stream, names="value")
        for control in (self.source, self.destination):
            control.observe(self._convert, names="value")
        self.device.observe(self._on_device, names="value")
        self.step.observe(self._render, names="value")
        super().__init__(
            [
                w.HBox([self.stream, self.source, self.destination]),
                w.HBox([self.device, self.play, self.step]),
                self.summary,
                self.current,
                self.table,
            ]
        )
        self.add_class("miglab-stepper")
        self._convert()

    def _load(self, label: str) -> Stream:
        if label not in self._cache:
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
        machine = destination_machine(stream.machine or "", dst) if stream.machine else ""
        try:
            _, self.report = convert_stream(
                stream, from_qemu=src, to_qemu=dst, machine=machine, allow_guest_visible=True
            )
            visible = len(self.report.guest_visible)
            self.summary.value = (
                f"QEMU {src} {html.escape(stream.machine or '?')} → QEMU {dst} "
                f"{html.escape(machine)}: <b>{len(self.report.changes)} changes</b>, "
                f"{visible} guest-visible"
            )
        except MiglabError as exc:
            self.report = ChangeReport()
            self.summary.value = f"<b>cannot convert</b>: {html.escape(str(exc))}"
        devices = sorted({c.device for c in self.report.changes})
        keep = self.device.value if self.device.value in devices else ALL
        self.device.unobserve(self._on_device, names="value")
        self.device.options = [ALL, *devices]
        self.device.value = keep
        self.device.observe(self._on_device, names="value")
        self._on_device()

    def _on_device(self, _change: object = None) -> None:
        dev = self.device.value
        self._steps = [c for c in self.report.changes if dev == ALL or c.device == dev]
        last = max(len(self._steps) - 1, 0)
        self.step.value = 0
        self.step.max = self.play.max = last
        self._render()

    @property
    def change(self) -> Change | None:
        """The change at the current step (None when there is nothing to change)."""
        return self._steps[self.step.value] if self._steps else None

    def _render(self, _change: object = None) -> None:
        c = self.change
        if c is None:
            self.current.value = "<i>no changes: the destination reads this stream as it is</i>"
        else:
            where = f"{c.device}:{c.path}" + (f" → {c.new_path}" if c.new_path else "")
            badge_colour = "#c0392b" if c.guest_visible else "#27ae60"
            self.current.value = (
                f"<div class='miglab-change'>step {self.step.value + 1}/{len(self._steps)} "
                f"<span style='background:{badge_colour};color:#fff;padding:0 4px'>"
                f"{html.escape(c.classification)}</span> <b>{html.escape(c.action)}</b> "
                f"<code>{html.escape(where)}</code><br>"
                f"{diff_html(short(c.before, 400), short(c.after, 400))}<br>"
                f"<i>{html.escape(c.reason)}</i></div>"
            )
        rows = [
            (
                i + 1,
                x.classification,
                x.action,
                x.device,
                x.path,
                short(x.before, 24),
                short(x.after, 24),
            )
            for i, x in enumerate(self._steps)
        ]
        self.table.value = table_html(
            ("#", "class", "action", "device", "path", "before", "after"),
            rows,
            marked=self.step.value if self._steps else None,
            css_class="miglab-changes",
        )
