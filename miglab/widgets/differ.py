"""The diff widget: two streams, section by section, member by member, byte by byte.

::

    from miglab.widgets import StreamDiffer
    StreamDiffer("data/q72-pc-q35-7.2-net.mig", "data/q100-pc-q35-7.2-net.mig")

The widget view of ``miglab diff`` (:func:`miglab.analysis.diff.diff_streams`):
pick A and B among the streams given (a :class:`~miglab.widgets.FileOpener`
can add more with :meth:`StreamDiffer.add_stream`), narrow to one section,
read the table; PCI config spaces show the register and the flipped bits.
"""

from __future__ import annotations

import dataclasses
import html
import os
from collections.abc import Mapping
from pathlib import Path

import ipywidgets as w

from miglab.analysis.diff import StreamDiff, diff_streams
from miglab.stream.model import Stream
from miglab.widgets._display import RunHint
from miglab.widgets._html import diff_changes_html

__all__ = ("StreamDiffer",)

ALL = "(all sections)"
Source = str | os.PathLike[str] | Stream


class StreamDiffer(RunHint, w.VBox):
    """Two dropdowns of streams, a section filter, and the differences as a table.

    Args:
        a, b: the streams picked first (paths or Streams); with ``streams``,
            their labels.
        streams: label -> path or Stream offered in both dropdowns (default:
            just ``a`` and ``b``).

    Attributes:
        a, b, section: the controls.
        summary, table: HTML models of what is shown.
        diff: the current :class:`~miglab.analysis.diff.StreamDiff`.
    """

    def __init__(
        self, a: Source, b: Source, *, streams: Mapping[str, Source] | None = None
    ) -> None:
        self._sources: dict[str, Source] = dict(streams or {})
        la, lb = (self._label(x) for x in (a, b))
        self._sources.setdefault(la, a)
        self._sources.setdefault(lb, b)
        self._cache: dict[str, Stream] = {}
        self.diff = StreamDiff((None, None))
        labels = list(self._sources)
        layout = w.Layout(width="420px")
        self.a = w.Dropdown(options=labels, value=la, description="A", layout=layout)
        self.b = w.Dropdown(options=labels, value=lb, description="B", layout=layout)
        self.section = w.Dropdown(options=[ALL], value=ALL, description="section",
                                  layout=layout)  # fmt: skip
        self.summary = w.HTML()
        self.table = w.HTML(layout=w.Layout(max_height="420px", overflow="auto"))
        for control in (self.a, self.b):
            control.observe(self._on_pick, names="value")
        self.section.observe(self._render, names="value")
        super().__init__([w.HBox([self.a, self.b]), self.section, self.summary, self.table])
        self.add_class("miglab-differ")
        self._on_pick()

    @staticmethod
    def _label(source: Source) -> str:
        return source.machine or "stream" if isinstance(source, Stream) else Path(source).name

    def add_stream(self, label: str, stream: Stream) -> None:
        """Offer another stream in both dropdowns (e.g. one a FileOpener opened) and pick it as B."""
        self._sources[label] = stream
        self._cache.pop(label, None)
        options = [*(o for o in self.a.options if o != label), label]
        self.a.options, self.b.options = options, options
        self.b.value = label

    def _load(self, label: str) -> Stream:
        if label not in self._cache:
            from miglab.containers import load

            src = self._sources[label]
            self._cache[label] = src if isinstance(src, Stream) else load(Path(src))
        return self._cache[label]

    def _on_pick(self, _change: object = None) -> None:
        self.diff = diff_streams(self._load(self.a.value), self._load(self.b.value))
        names = [s.name for s in self.diff.sections]
        keep = self.section.value if self.section.value in names else ALL
        self.section.unobserve(self._render, names="value")
        self.section.options = [ALL, *names]
        self.section.value = keep
        self.section.observe(self._render, names="value")
        self._render()

    def _render(self, _change: object = None) -> None:
        d = self.diff
        changes = sum(len(s.changes) for s in d.sections)
        if not d:
            self.summary.value = "<b>identical</b>: same machine type and device state"
        else:
            self.summary.value = (
                f"<b>{len(d.sections)} section(s) differ</b> ({changes} member change(s)), "
                f"{d.identical} identical"
            )
        shown = d
        if self.section.value != ALL:
            picked = tuple(s for s in d.sections if s.name == self.section.value)
            shown = dataclasses.replace(d, sections=picked)
        self.table.value = diff_changes_html(shown) if d else ""
        if d and self.section.value != ALL:
            self.summary.value += f"; showing {html.escape(self.section.value)}"
