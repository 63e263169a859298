"""QEMU facts as data: the files of this directory, parsed once into typed records.

What miglab knows about QEMU that no stream or schema says -- renames, compat rules, PCI
register names, capability bits, which devices a machine can have -- lives in the JSON
files beside this module, so that tests and notebooks can read and show it.  Each file has
one accessor here that decodes it into frozen records (msgspec ``Struct`` types, in
:mod:`~miglab.knowledge.compat`, :mod:`~miglab.knowledge.hardware` and
:mod:`~miglab.knowledge.capabilities`), checks it on the way (types, required and unknown
members, cross-references) and caches the result.  A malformed file -- say, after a hand
edit -- fails on first use with one :class:`~miglab.errors.KnowledgeError` that names the
file and the JSON path of the member, never with a ``KeyError`` inside its reader.

    >>> compat_qemu().qemu["10.0"].machines["pc-q35"]
    ('2.4', '10.0')
    >>> e1000_registers().registers["RCTL"]
    256

The records are shared: treat them as read-only (their dicts are plain dicts).
"""

from __future__ import annotations

from functools import cache

from miglab.knowledge._load import decode_knowledge, load_knowledge
from miglab.knowledge.capabilities import Capabilities
from miglab.knowledge.compat import CompatQemu, CompatVirtio, SchemaRenames, SchemaSafe
from miglab.knowledge.hardware import E1000Registers, MachineHarvest, PciConfig

__all__ = (
    "FILES",
    "capabilities",
    "compat_qemu",
    "compat_virtio",
    "decode_knowledge",
    "e1000_registers",
    "machine_harvest",
    "pci_config",
    "schema_renames",
    "schema_safe",
)

#: Every knowledge file -> its record type.
FILES: dict[str, type] = {
    "capabilities.json": Capabilities,
    "compat-qemu.json": CompatQemu,
    "compat-schema-safe.json": SchemaSafe,
    "compat-virtio.json": CompatVirtio,
    "e1000-registers.json": E1000Registers,
    "machine-devices.json": MachineHarvest,
    "pci-config.json": PciConfig,
    "schema-renames.json": SchemaRenames,
}


@cache
def capabilities() -> Capabilities:
    """``capabilities.json``: the capability bits, the encoder order, what live supports."""
    return load_knowledge("capabilities.json", Capabilities)


@cache
def compat_qemu() -> CompatQemu:
    """``compat-qemu.json``: builds, machine generations, device edits, PCI and section rules."""
    return load_knowledge("compat-qemu.json", CompatQemu)


@cache
def compat_virtio() -> CompatVirtio:
    """``compat-virtio.json``: virtio MSI-X vectors and layouts, feature and subsection rules."""
    return load_knowledge("compat-virtio.json", CompatVirtio)


@cache
def schema_safe() -> SchemaSafe:
    """``compat-schema-safe.json``: the schema-driven step's safe changes and unlisted vmsds."""
    return load_knowledge("compat-schema-safe.json", SchemaSafe)


@cache
def schema_renames() -> SchemaRenames:
    """``schema-renames.json``: field and device-class renames that leave the wire alone."""
    return load_knowledge("schema-renames.json", SchemaRenames)


@cache
def e1000_registers() -> E1000Registers:
    """``e1000-registers.json``: the e1000's register offsets."""
    return load_knowledge("e1000-registers.json", E1000Registers)


@cache
def pci_config() -> PciConfig:
    """``pci-config.json``: PCI config header, capability registers and bit names."""
    return load_knowledge("pci-config.json", PciConfig)


@cache
def machine_harvest() -> MachineHarvest:
    """``machine-devices.json``: the device classes pc/q35 machines of each build can have."""
    return load_knowledge("machine-devices.json", MachineHarvest)
