"""Compatibility as functions on data: transforms, plans, change reports, filters.

* :class:`Registry` / :func:`plan` (:mod:`miglab.compat.registry`): transforms per device and
  version, chained by a planner; :func:`default_registry` (:mod:`miglab.compat.defaults`)
  builds, when called, the registry of every transform miglab ships;
* :class:`Edit` (:mod:`miglab.compat.edit`): the recorded edits transforms are written with;
* :class:`Change` / :class:`ChangeReport` (:mod:`miglab.compat.report`): what changed;
* :func:`convert_stream` (:mod:`miglab.compat.qemu`): whole streams between QEMU builds and
  machine types, from the rules in ``miglab/knowledge/compat-qemu.json`` (keyed on the QEMU
  build or on the machine generation, :func:`machine_generation`);
* marshal/unmarshal filters (:class:`miglab.vmstate.filters.Filters`) are an argument of
  :func:`convert_stream` and :class:`~miglab.compat.qemu.Conversion`, never a registry.
"""

from __future__ import annotations

from miglab.compat.defaults import default_registry, plan
from miglab.compat.edit import Edit
from miglab.compat.qemu import convert_stream
from miglab.compat.qemu_knowledge import (
    MACHINE_GENERATIONS,
    QEMU_VERSIONS,
    machine_generation,
    qemu_of_machine,
)
from miglab.compat.registry import Plan, Registry, Transform
from miglab.compat.report import Change, ChangeReport
from miglab.compat.schema_check import Compatibility, check_schemas, compatibility

__all__ = (
    "MACHINE_GENERATIONS",
    "QEMU_VERSIONS",
    "Change",
    "ChangeReport",
    "Compatibility",
    "Edit",
    "Plan",
    "Registry",
    "Transform",
    "check_schemas",
    "compatibility",
    "convert_stream",
    "default_registry",
    "machine_generation",
    "plan",
    "qemu_of_machine",
)
