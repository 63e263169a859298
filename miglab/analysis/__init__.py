"""Look: pandas tables and matplotlib figures built on the object tree.

* :mod:`~miglab.analysis.frames`: a stream's sections, fields and RAM blocks;
* :mod:`~miglab.analysis.diff`: two streams compared section by section, field by
  field and byte by byte (PCI config: register and bit);
* :mod:`~miglab.analysis.schema_tables`: ``-dump-vmstate`` schemas, a row per field;
* :mod:`~miglab.analysis.evolution`: what changes across QEMU builds and machine types;
* :mod:`~miglab.analysis.figures`: matplotlib figures of all of the above.

Every module is imported on first use of one of its names, so
``ram_frame(stream)`` does not pay for matplotlib, and ``miglab diff``
(:mod:`~miglab.analysis.diff`, plain Python) does not pay for pandas.
"""

from __future__ import annotations

from miglab.lazy import lazy_attributes

_LAZY = {
    "StreamDiff": "miglab.analysis.diff",
    "diff_streams": "miglab.analysis.diff",
    "fields_frame": "miglab.analysis.frames",
    "ram_frame": "miglab.analysis.frames",
    "sections_frame": "miglab.analysis.frames",
    "DATA_DIR": "miglab.analysis.evolution",
    "bench_table": "miglab.analysis.figures",
    "compat_pivot": "miglab.analysis.figures",
    "RELEASES": "miglab.analysis.evolution",
    "device_name": "miglab.analysis.evolution",
    "device_timeline": "miglab.analysis.evolution",
    "field_timeline": "miglab.analysis.evolution",
    "release_schemas": "miglab.analysis.evolution",
    "Step": "miglab.analysis.conversion_steps",
    "conversion_steps": "miglab.analysis.conversion_steps",
    "field_changes": "miglab.analysis.evolution",
    "machine_key": "miglab.analysis.evolution",
    "manifest_frame": "miglab.analysis.evolution",
    "plot_compat_matrix": "miglab.analysis.figures",
    "plot_encoders": "miglab.analysis.figures",
    "plot_section_sizes": "miglab.analysis.figures",
    "plot_version_heatmap": "miglab.analysis.figures",
    "read_schema": "miglab.analysis.schema_tables",
    "schema_devices_frame": "miglab.analysis.schema_tables",
    "schema_frame": "miglab.analysis.schema_tables",
    "schema_machine": "miglab.analysis.schema_tables",
    "schema_version_matrix": "miglab.analysis.evolution",
    "stream_devices_frame": "miglab.analysis.evolution",
    "subsection_matrix": "miglab.analysis.evolution",
    "version_matrix": "miglab.analysis.evolution",
}

__all__ = (
    "DATA_DIR",
    "RELEASES",
    "Step",
    "StreamDiff",
    "bench_table",
    "compat_pivot",
    "conversion_steps",
    "device_name",
    "device_timeline",
    "diff_streams",
    "field_changes",
    "field_timeline",
    "fields_frame",
    "machine_key",
    "manifest_frame",
    "plot_compat_matrix",
    "plot_encoders",
    "plot_section_sizes",
    "plot_version_heatmap",
    "ram_frame",
    "read_schema",
    "release_schemas",
    "schema_devices_frame",
    "schema_frame",
    "schema_machine",
    "schema_version_matrix",
    "sections_frame",
    "stream_devices_frame",
    "subsection_matrix",
    "version_matrix",
)


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> tuple[str, ...]:
    return __all__
