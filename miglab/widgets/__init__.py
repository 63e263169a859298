"""Look, interactively: ipywidgets over the object tree.

* :class:`StreamExplorer`: pick a section, see its fields and a hex view of its bytes;
* :class:`TransformStepper`: convert a stream for another QEMU, one change at a time;
* :class:`CapabilityNegotiator`: toggle two endpoints' capabilities, see what they agree on.

Each widget is an ``ipywidgets.VBox`` whose results live in ``HTML`` models,
so it can be driven from Python (set a control's value, read the HTML)
as well as in a browser.
"""

from __future__ import annotations

from miglab.widgets.explorer import StreamExplorer
from miglab.widgets.negotiator import CapabilityNegotiator
from miglab.widgets.stepper import TransformStepper

__all__ = ("CapabilityNegotiator", "StreamExplorer", "TransformStepper")


def __dir__() -> tuple[str, ...]:
    return __all__
