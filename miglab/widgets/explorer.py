"""The stream explorer: pick a section, see its fields and its bytes.

::

    from miglab.widgets import StreamExplorer
    StreamExplorer("data/q72-pc-q35-7.2-net.mig")   # any container: .gz, libvirt save, qcow2

The search box narrows the field list to the names that contain its text.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import ipywidgets as w
import pandas as pd

from miglab.analysis.frames import fields_frame
from miglab.stream.model import Section, SectionKind, Stream
from miglab.widgets._display import RunHint
from miglab.widgets._html import hexdump_html, short, table_html

__all__ = ("StreamExplorer",)

_FIELD_COLUMNS = ("path", "type", "size", "offset", "value")


class StreamExplorer(RunHint, w.VBox):
    """Pick a device section: its fields as a table, its bytes as a hex dump.

    Picking a field highlights its row and its bytes in the dump.  Built on
    the object tree: the table is :func:`~miglab.analysis.frames.fields_frame`, the bytes are
    the stream's own (the file, or :meth:`Stream.to_bytes` for a tree built
    in memory), located by each record's ``offset`` and ``size``.

    Attributes:
        section: dropdown of full (device) sections, value = index in ``stream.records``.
        search: text that narrows ``field`` to the paths containing it.
        field: dropdown of the section's leaf fields, value = row in ``fields``.
        summary, table, hexview: HTML models of what is shown.
    """

    def __init__(self, stream: Stream | str | os.PathLike[str], *, hex_limit: int = 512) -> None:
        self.hex_limit = hex_limit
        self.section = w.Dropdown(options=[], description="section", layout=w.Layout(width="480px"))
        self.search = w.Text(
            placeholder="field name contains…", description="search", layout=w.Layout(width="300px")
        )
        self.field = w.Dropdown(options=[], description="field", layout=w.Layout(width="480px"))
        self.summary = w.HTML()
        self.table = w.HTML(layout=w.Layout(max_height="320px", overflow="auto"))
        self.hexview = w.HTML(layout=w.Layout(max_height="320px", overflow="auto"))
        self.section.observe(self._on_section, names="value")
        self.search.observe(self._on_section, names="value")
        self.field.observe(self._on_field, names="value")
        super().__init__(
            [
                w.HBox([self.section, self.search]),
                self.field,
                self.summary,
                w.HBox([self.table, self.hexview]),
            ]
        )
        self.add_class("miglab-explorer")
        self.show(stream)

    def show(self, stream: Stream | str | os.PathLike[str]) -> None:
        """Explore another stream: a Stream, or a file in any container miglab reads.

        The hex view shows the bare stream's bytes (the file itself, or for a
        compressed or wrapped one, :meth:`Stream.to_bytes`), where the
        records' offsets point.
        """
        if isinstance(stream, Stream):
            self.stream, self.data = stream, stream.to_bytes()
        else:
            from miglab.containers import load as load_any

            self.stream = load_any(stream)
            bare = self.stream.container is None
            self.data = Path(stream).read_bytes() if bare else self.stream.to_bytes()
        self.frame = fields_frame(self.stream)
        options = [
            (
                f"{r.name}"
                + (f" #{r.instance_id}" if r.instance_id else "")
                + f"  (v{r.version_id}, {r.size} B)",
                i,
            )
            for i, r in enumerate(self.stream.records)
            if isinstance(r, Section) and r.kind is SectionKind.FULL
        ]
        self.section.unobserve(self._on_section, names="value")
        self.section.options = options
        self.section.value = options[0][1] if options else None
        self.section.observe(self._on_section, names="value")
        self._on_section()

    @property
    def record(self) -> Section:
        """The section picked."""
        rec = self.stream.records[self.section.value]
        assert isinstance(rec, Section)
        return rec

    @property
    def fields(self) -> pd.DataFrame:
        """The picked section's rows of :func:`~miglab.analysis.frames.fields_frame`."""
        rec = self.record
        df = self.frame
        sel = df[(df["section"] == rec.name) & (df["instance_id"] == rec.instance_id)]
        return sel.reset_index(drop=True)

    def _on_section(self, _change: object = None) -> None:
        rec, fields = self.record, self.fields
        needle = self.search.value.strip().lower()
        self.field.options = [
            (p, i) for i, p in enumerate(fields["path"]) if needle in str(p).lower()
        ]
        decoded = (
            "decoded" if rec.decoded else f"kept opaque ({getattr(rec.payload, 'reason', '')})"
        )
        self.summary.value = (
            f"<b>{rec.name}</b> instance {rec.instance_id}, version {rec.version_id}: "
            f"{rec.size} bytes at offset {rec.offset}, {len(fields)} fields, {decoded}"
            + (f"; {len(self.field.options)} match “{html.escape(needle)}”" if needle else "")
        )
        self._render()

    def _on_field(self, _change: object = None) -> None:
        self._render()

    def _render(self) -> None:
        rec, fields = self.record, self.fields
        i = self.field.value
        rows = [
            (r.path, r.type, r.size, r.offset, short(r.value))
            for r in fields.itertuples(index=False)
        ]
        self.table.value = table_html(_FIELD_COLUMNS, rows, marked=i, css_class="miglab-fields")
        mark = None
        if i is not None and i < len(fields):
            off, size = int(fields["offset"].iloc[i]), int(fields["size"].iloc[i])
            mark = (off, off + size)
        start = max(rec.offset, 0)
        self.hexview.value = hexdump_html(
            self.data[start : start + rec.size], start, mark=mark, limit=self.hex_limit
        )
