"""miglab: read, transform and re-encode QEMU live-migration streams.

Three seams meet in one object tree (see DESIGN.md):

* serialize: :mod:`miglab.visitors` and :mod:`miglab.vmstate` (one walk, both ways);
* transform: :mod:`miglab.compat`;
* encode: :mod:`miglab.encoders` (QEMU's legacy stream in :mod:`miglab.stream`).

:func:`load` and :func:`save` also unwrap and re-wrap what surrounds a stream
(compression, libvirt save images, qcow2 snapshots, mapped-ram files:
:mod:`miglab.containers`).

Quick start::

    import miglab
    stream = miglab.load("data/q72-pc-q35-7.2-net.mig")
    miglab.sections_frame(stream)        # pandas: a row per record (also fields_frame, ram_frame)
    miglab.save(stream, "copy.mig")      # byte for byte the same
"""

from __future__ import annotations

from miglab.errors import (
    CapabilityError,
    CompatError,
    DescriptionError,
    EncodingError,
    LimitExceeded,
    MiglabError,
    MigrationFormatError,
    TruncatedStreamError,
    VisitorError,
)
from miglab.lazy import lazy_attributes

# ``typing`` is not imported at run time (``miglab --version`` needs none of it);
# mypy reads this name as typing.TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from miglab.analysis.frames import fields_frame, ram_frame, sections_frame
    from miglab.containers import load, save
    from miglab.findings import Finding
    from miglab.limits import LIMITS, Limits
    from miglab.stream import Opaque, Section, SectionKind, Stream
    from miglab.vmstate import VMState
    from miglab.vmstate.filters import Filters

__version__ = "0.1.0"

# The object tree and its reader/writer load on first use: ``miglab --version``
# and the error classes cost no stream machinery (nor numpy); the tables load
# pandas only when one is asked for.
_LAZY = {
    "Filters": "miglab.vmstate.filters",
    "Finding": "miglab.findings",
    "LIMITS": "miglab.limits",
    "Limits": "miglab.limits",
    "Opaque": "miglab.stream",
    "Section": "miglab.stream",
    "SectionKind": "miglab.stream",
    "Stream": "miglab.stream",
    "VMState": "miglab.vmstate",
    "fields_frame": "miglab.analysis.frames",
    "load": "miglab.containers",
    "ram_frame": "miglab.analysis.frames",
    "save": "miglab.containers",
    "sections_frame": "miglab.analysis.frames",
}

__all__ = (
    "LIMITS",
    "CapabilityError",
    "CompatError",
    "DescriptionError",
    "EncodingError",
    "Filters",
    "Finding",
    "LimitExceeded",
    "Limits",
    "MiglabError",
    "MigrationFormatError",
    "Opaque",
    "Section",
    "SectionKind",
    "Stream",
    "TruncatedStreamError",
    "VMState",
    "VisitorError",
    "__version__",
    "fields_frame",
    "load",
    "ram_frame",
    "save",
    "sections_frame",
)


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> tuple[str, ...]:
    return __all__
