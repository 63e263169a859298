"""The capability negotiator: toggle each endpoint's features, see what they agree on.

::

    from miglab.widgets import CapabilityNegotiator
    CapabilityNegotiator()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import ipywidgets as w

from miglab.capabilities import (
    CAPABILITIES,
    LocalEndpoint,
    choose_encoder,
    mask_of,
    names_of,
    negotiate,
    transforms_enabled,
)
from miglab.widgets._display import RunHint
from miglab.widgets._html import table_html

__all__ = ("CapabilityNegotiator",)


def _default_names() -> list[str]:
    """miglab's own capabilities (bits below 32) and a few of QEMU's."""
    own = [n for n, bit in CAPABILITIES.items() if bit < 32]
    return [*own, "multifd", "return-path", "postcopy-ram"]


class CapabilityNegotiator(RunHint, w.VBox):
    """Two columns of checkboxes, one per endpoint; the negotiated result below.

    Each change negotiates afresh between two :class:`LocalEndpoint` with
    the ticked masks (:func:`negotiate` intersects them and sets the result
    on both) and shows the mask, the encoder :func:`choose_encoder` picks
    and whether compat transforms may run.

    Attributes:
        source, destination: ``{capability name: Checkbox}``.
        result: HTML model of the outcome.
        mask: the negotiated mask after the last change.
    """

    def __init__(
        self,
        names: Sequence[str] | None = None,
        *,
        source: Iterable[str] = (
            "encoder-legacy",
            "encoder-cbor",
            "encoder-json",
            "compat-transforms",
        ),
        destination: Iterable[str] = ("encoder-legacy", "encoder-json", "compat-transforms"),
    ) -> None:
        self.names = list(names) if names is not None else _default_names()
        ticked = {"source": set(source), "destination": set(destination)}
        self.source = self._column("source", ticked["source"])
        self.destination = self._column("destination", ticked["destination"])
        self.result = w.HTML()
        self.mask = 0
        columns = [
            w.VBox([w.HTML(f"<b>{side}</b>"), *boxes.values()])
            for side, boxes in (("source", self.source), ("destination", self.destination))
        ]
        super().__init__([w.HBox(columns), self.result])
        self.add_class("miglab-negotiator")
        self._update()

    def _column(self, side: str, ticked: set[str]) -> dict[str, w.Checkbox]:
        boxes = {}
        for name in self.names:
            box = w.Checkbox(value=name in ticked, description=name, indent=False)
            box.add_class(f"miglab-{side}")
            box.observe(self._update, names="value")
            boxes[name] = box
        return boxes

    def masks(self) -> tuple[int, int]:
        """The (source, destination) masks the checkboxes say."""
        return tuple(  # type: ignore[return-value]
            mask_of([n for n, box in boxes.items() if box.value])
            for boxes in (self.source, self.destination)
        )

    def _update(self, _change: object = None) -> None:
        src, dst = self.masks()
        self.mask = negotiate(LocalEndpoint(src), LocalEndpoint(dst))
        agreed = ", ".join(names_of(self.mask)) or "(nothing)"
        rows = [
            ("source mask", f"0x{src:x}"),
            ("destination mask", f"0x{dst:x}"),
            ("negotiated mask", f"0x{self.mask:x}"),
            ("agreed", agreed),
            ("encoder", choose_encoder(self.mask)),
            ("compat transforms", "yes" if transforms_enabled(self.mask) else "no"),
        ]
        self.result.value = table_html(("", ""), rows, css_class="miglab-negotiated")
