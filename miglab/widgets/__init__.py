"""Look, interactively: ipywidgets over the object tree.

* :class:`StreamExplorer`: pick a section, see its fields and a hex view of its bytes;
* :class:`TransformStepper`: a conversion applied one unit at a time, each step judged by real QEMU;
* :class:`StreamDiffer`: two streams compared section, member and byte (PCI: register and bit);
* :class:`FileOpener`: open your own stream or container (path or upload, optional schema);
* :class:`DeviceDrillDown`: one device's fields across the four QEMU releases;
* :class:`CapabilityNegotiator`: toggle two endpoints' capabilities, see what they agree on.

Each widget is an ``ipywidgets.VBox`` whose results live in ``HTML`` models,
so it can be driven from Python (set a control's value, read the HTML)
as well as in a browser.
"""

from __future__ import annotations

from miglab.widgets.differ import StreamDiffer
from miglab.widgets.drilldown import DeviceDrillDown
from miglab.widgets.explorer import StreamExplorer
from miglab.widgets.negotiator import CapabilityNegotiator
from miglab.widgets.opener import FileOpener
from miglab.widgets.stepper import TransformStepper

__all__ = (
    "CapabilityNegotiator",
    "DeviceDrillDown",
    "FileOpener",
    "StreamDiffer",
    "StreamExplorer",
    "TransformStepper",
)


def __dir__() -> tuple[str, ...]:
    return __all__
