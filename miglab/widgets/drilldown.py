"""The device drill-down: one device class's fields across the four QEMU releases.

::

    from miglab.widgets import DeviceDrillDown
    DeviceDrillDown()            # the q35 schemas of 5.2, 7.2, 10.0 and 11.1 in data/

Pick a device class (the search box narrows the list): its vmsd version per
release, then a row per field with its wire shape in each release
(``v{version} {size}B``) and what changed when
(:func:`miglab.analysis.evolution.field_timeline`).  "changes only" keeps the
fields whose history is not empty.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import ipywidgets as w
import pandas as pd

from miglab.analysis.evolution import device_timeline, field_timeline, release_schemas
from miglab.analysis.schema_tables import SchemaSource, read_schema
from miglab.widgets._display import RunHint
from miglab.widgets._html import table_html

__all__ = ("DeviceDrillDown",)


class DeviceDrillDown(RunHint, w.VBox):
    """A device dropdown (with search) over several releases' schemas; its field timeline.

    Args:
        schemas: release label -> ``-dump-vmstate`` JSON, oldest first
            (default: :func:`~miglab.analysis.evolution.release_schemas`).
        device: the device class picked first (default: ``e1000e``, else the first that changes).

    Attributes:
        search, device, changes_only: the controls.
        versions, table: HTML models of what is shown.
        devices: :func:`~miglab.analysis.evolution.device_timeline` of the schemas.
        fields: the field timeline of the picked device.
    """

    def __init__(
        self, schemas: Mapping[str, SchemaSource] | None = None, *, device: str | None = None
    ) -> None:
        given = dict(schemas) if schemas is not None else dict(release_schemas())
        self._schemas = {r: read_schema(s) for r, s in given.items()}  # parsed once
        self.devices = device_timeline(self._schemas)
        self._all = field_timeline(self._schemas)
        changing = sorted(set(self._all[self._all["history"] != ""].index.get_level_values(0)))
        names = list(self.devices.index)
        fallback = "e1000e" if "e1000e" in names else (changing[0] if changing else names[0])
        first = device if device is not None else fallback
        self._names = names
        self.search = w.Text(placeholder="device name contains…", description="search")
        self.device = w.Dropdown(options=names, value=first, description="device",
                                 layout=w.Layout(width="360px"))  # fmt: skip
        self.changes_only = w.Checkbox(value=False, description="changes only")
        self.versions = w.HTML()
        self.table = w.HTML(layout=w.Layout(max_height="420px", overflow="auto"))
        self.fields = pd.DataFrame()
        self.search.observe(self._on_search, names="value")
        self.device.observe(self._render, names="value")
        self.changes_only.observe(self._render, names="value")
        super().__init__(
            [w.HBox([self.search, self.device, self.changes_only]), self.versions, self.table]
        )
        self.add_class("miglab-drilldown")
        self._render()

    def _on_search(self, _change: object = None) -> None:
        needle = self.search.value.strip().lower()
        matches = [n for n in self._names if needle in n.lower()] or self._names
        keep = self.device.value if self.device.value in matches else matches[0]
        self.device.unobserve(self._render, names="value")
        self.device.options = matches
        self.device.value = keep
        self.device.observe(self._render, names="value")
        self._render()

    def _render(self, _change: object = None) -> None:
        name = self.device.value
        row = self.devices.loc[name]
        shown = " · ".join(f"{r}: {'absent' if pd.isna(v) else f'v{v}'}" for r, v in row.items())
        self.versions.value = f"<b>{html.escape(name)}</b> vmsd version per release: {shown}"
        fields = self._all[self._all.index.get_level_values("device") == name]
        if self.changes_only.value:
            fields = fields[fields["history"] != ""]
        self.fields = fields
        releases = [c for c in fields.columns if c != "history"]
        rows = [
            (path if n == 0 else f"{path} #{n}", *cells)
            for (_, path, n), *cells in fields.itertuples(index=True, name=None)
        ]
        self.table.value = (
            table_html(("field", *releases, "history"), rows, css_class="miglab-timeline")
            if rows
            else "<i>no field changes between these releases</i>"
        )
