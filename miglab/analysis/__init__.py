"""Look: pandas tables and matplotlib figures built on the object tree.

* :mod:`~miglab.analysis.frames`: a stream's sections, fields and RAM blocks;
* :mod:`~miglab.analysis.schema_tables`: ``-dump-vmstate`` schemas, a row per field;
* :mod:`~miglab.analysis.evolution`: what changes across QEMU builds and machine types;
* :mod:`~miglab.analysis.figures`: matplotlib figures of all of the above.
"""

from __future__ import annotations

from miglab.analysis.evolution import (
    DATA_DIR,
    device_name,
    field_changes,
    machine_key,
    manifest_frame,
    schema_version_matrix,
    stream_devices_frame,
    subsection_matrix,
    version_matrix,
)
from miglab.analysis.figures import (
    bench_table,
    compat_pivot,
    plot_compat_matrix,
    plot_encoders,
    plot_section_sizes,
    plot_version_heatmap,
)
from miglab.analysis.frames import fields_frame, ram_frame, sections_frame
from miglab.analysis.schema_tables import (
    read_schema,
    schema_devices_frame,
    schema_frame,
    schema_machine,
)

__all__ = (
    "DATA_DIR",
    "bench_table",
    "compat_pivot",
    "device_name",
    "field_changes",
    "fields_frame",
    "machine_key",
    "manifest_frame",
    "plot_compat_matrix",
    "plot_encoders",
    "plot_section_sizes",
    "plot_version_heatmap",
    "ram_frame",
    "read_schema",
    "schema_devices_frame",
    "schema_frame",
    "schema_machine",
    "schema_version_matrix",
    "sections_frame",
    "stream_devices_frame",
    "subsection_matrix",
    "version_matrix",
)
