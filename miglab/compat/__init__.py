"""Compatibility as functions on data: transforms, plans, change reports, filters.

* :func:`register` / :func:`plan` (:mod:`miglab.compat.registry`): transforms per device and
  version, chained by a planner;
* :class:`Edit` (:mod:`miglab.compat.edit`): the recorded edits transforms are written with;
* :class:`Change` / :class:`ChangeReport` (:mod:`miglab.compat.report`): what changed;
* :func:`convert_stream` (:mod:`miglab.compat.qemu`): whole streams between QEMU builds and
  machine types, from the rules in ``miglab/knowledge/compat-qemu.json`` (keyed on the QEMU
  build or on the machine generation, :func:`machine_generation`);
* :mod:`miglab.compat.filters`: marshal/unmarshal filters of the device pipeline.
"""

from __future__ import annotations

from miglab.compat import (  # noqa: F401  (register the virtio transforms)
    filters,
    virtio_features,
    virtio_rules,
    virtio_subsections,
)
from miglab.compat.edit import Edit
from miglab.compat.qemu import convert_stream
from miglab.compat.qemu_knowledge import (
    MACHINE_GENERATIONS,
    QEMU_VERSIONS,
    machine_generation,
    qemu_of_machine,
)
from miglab.compat.registry import REGISTRY, Plan, Registry, Transform, plan, register
from miglab.compat.report import Change, ChangeReport
from miglab.compat.schema_check import Compatibility, Finding, check_schemas, compatibility

__all__ = (
    "MACHINE_GENERATIONS",
    "QEMU_VERSIONS",
    "REGISTRY",
    "Change",
    "ChangeReport",
    "Compatibility",
    "Edit",
    "Finding",
    "Plan",
    "Registry",
    "Transform",
    "check_schemas",
    "compatibility",
    "convert_stream",
    "filters",
    "machine_generation",
    "plan",
    "qemu_of_machine",
    "register",
)
