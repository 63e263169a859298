"""The compat knowledge files as typed records: builds, device edits, virtio rules, renames.

* ``compat-qemu.json`` (:class:`CompatQemu`): the QEMU builds miglab knows and their
  machine types, the machine generations, per device and hop the edits QEMU's code change
  implies, the read-only PCI config bit rules and the whole-section rules;
* ``compat-virtio.json`` (:class:`CompatVirtio`): per virtio device the MSI-X vectors and
  PCI layouts of each machine generation, feature and subsection rules;
* ``compat-schema-safe.json`` (:class:`SchemaSafe`): what the schema-driven step may change
  without the guest noticing, and vmsds a build loads although its schema omits them;
* ``schema-renames.json`` (:class:`SchemaRenames`): renames that do not change the wire.

Their readers are :mod:`miglab.compat` (docs/compat.md says what each rule means).
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec

from miglab.knowledge._load import Record, check

__all__ = (
    "AddField",
    "CompatQemu",
    "CompatVirtio",
    "DeviceRename",
    "DeviceTransform",
    "FieldEdit",
    "FieldRename",
    "PciBitRule",
    "QemuBuild",
    "RemoveField",
    "RemoveSubsection",
    "RenameField",
    "ResizeField",
    "Rules",
    "SchemaRenames",
    "SchemaSafe",
    "SectionRule",
    "SubsectionRule",
    "VirtioDevice",
    "VirtioFeatureRule",
    "VirtioLayout",
)

#: A QEMU release or machine version, ``"10.0"``.
Version = Annotated[str, msgspec.Meta(pattern=r"^\d+\.\d+$")]
#: A compat step's end: a build (``"7.2"``) or a machine generation (``"machine:7.2"``).
StepEnd = Annotated[str, msgspec.Meta(pattern=r"^(machine:)?\d+\.\d+$")]
Classification = Literal["safe", "guest-visible"]
R = TypeVar("R")


class Rules(Record, Generic[R], frozen=True):
    """A list of rules with the text that says what they are for (``{"about", "rules"}``)."""

    about: str
    rules: tuple[R, ...]


# --- compat-qemu.json ------------------------------------------------------------------------
class QemuBuild(Record, frozen=True):
    """One build: the last migration command it knows, its machine types, its sections
    numbered per instance (``0, 1, ...`` rather than all 0)."""

    max_command: int
    machines: dict[str, tuple[Version, Version]]  # family -> (oldest, newest) version
    numbered_instances: tuple[str, ...]


class RenameField(Record, frozen=True, tag_field="op", tag="rename"):
    path: str
    to: str
    info: str | None = None
    num: int | None = None
    reason: str = ""


class RemoveField(Record, frozen=True, tag_field="op", tag="remove"):
    path: str
    safe_if: int | None = None  # the value with which the removal is safe
    reason: str = ""


class AddField(Record, frozen=True, tag_field="op", tag="add"):
    path: str
    info: str
    value: int | Literal["zeros"]  # "zeros": ``size`` zero bytes
    after: str | None = None
    size: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        check(self.value != "zeros" or self.size is not None, "'zeros' needs a 'size'")


class ResizeField(Record, frozen=True, tag_field="op", tag="resize"):
    path: str
    size: int
    reason: str = ""


class RemoveSubsection(Record, frozen=True, tag_field="op", tag="remove_subsection"):
    name: str
    classification: Classification
    within: str = ""  # the member path of the struct holding the subsection
    reason: str = ""


FieldEdit = RenameField | RemoveField | AddField | ResizeField | RemoveSubsection


class DeviceTransform(Record, frozen=True):
    """One device's edits for one hop between two builds or machine generations."""

    device: str
    src: StepEnd
    dst: StepEnd
    edits: tuple[FieldEdit, ...]
    source: str
    description: str = ""


class PciBitRule(Record, frozen=True):
    """Bits at ``offset`` (``mask``) in capability ``capability`` that devices set on the
    machine generations ``set_in`` and clear on the others."""

    capability: int
    offset: int
    mask: int
    set_in: tuple[str, ...]
    what: str
    source: str
    extended: bool = False  # an extended (PCI Express, 0x100 on) capability
    devices: tuple[str, ...] | None = None  # only these device types
    needs: tuple[int, int] | None = None  # (offset, mask) that must be set too


class PciSlotRules(Rules[PciBitRule], frozen=True):
    def __post_init__(self) -> None:
        check(all(r.devices for r in self.rules), "a slot rule names its port 'devices'")


class PciRules(Rules[PciBitRule], frozen=True):
    slot_rules: PciSlotRules


class SectionRule(Record, frozen=True):
    """A section only the builds ``qemu`` have."""

    idstr: str
    qemu: tuple[Version, ...]
    source: str


class CompatQemu(Record, frozen=True):
    """``compat-qemu.json``."""

    about: str
    qemu_about: str
    qemu: dict[Version, QemuBuild]  # in release order
    # "about", then machine generation -> (oldest, newest) machine version
    machine_generations: dict[str, tuple[Version, Version] | str]
    transforms: tuple[DeviceTransform, ...]
    pci: PciRules
    numbered_instances_source: str
    sections: Rules[SectionRule]

    def __post_init__(self) -> None:
        for g, span in self.machine_generations.items():
            check(
                (g == "about") == isinstance(span, str),
                "machine_generations: 'about' is text, every other entry [oldest, newest]",
            )

    def generations(self) -> dict[str, tuple[str, str]]:
        """Machine generation -> (oldest, newest) machine version, oldest first."""
        return {g: s for g, s in self.machine_generations.items() if not isinstance(s, str)}


# --- compat-virtio.json ------------------------------------------------------------------------
class VirtioLayout(Record, frozen=True):
    """A device's PCI config bytes with ``msix_vectors`` vectors, from ``reference``."""

    msix_vectors: int
    reference: str
    config: str  # hex

    def __post_init__(self) -> None:
        try:
            bytes.fromhex(self.config)
        except ValueError:
            check(False, "config is not hex")


class VirtioDevice(Record, frozen=True):
    pci_device: str
    why: str
    msix_bar: int
    vectors: dict[Version, int]  # machine generation (no prefix) -> vectors, oldest first
    vectors_source: str
    vectors_property: tuple[Version, ...]  # builds whose device takes ``vectors``
    layouts: dict[str, VirtioLayout]


class VirtioFeatureRule(Record, frozen=True):
    """Feature ``bit`` is offered from ``offered_from`` machines on, not on ``absent_in``."""

    bit: Annotated[int, msgspec.Meta(ge=0, le=63)]
    name: str
    absent_in: Version
    offered_from: Version
    source: str
    what: str


class SubsectionRule(Record, frozen=True):
    """A subsection of ``device``'s ``part`` renamed between ``old_build`` and ``new_build``."""

    device: str
    part: str
    old_build: Version
    new_build: Version
    old_name: str
    new_name: str
    old_build_loads: bool  # whether the old build loads the new name
    field: str
    default: int
    why: str
    source: str
    what: str


class CompatVirtio(Record, frozen=True):
    """``compat-virtio.json``."""

    about: str
    devices: dict[str, VirtioDevice]
    features: Rules[VirtioFeatureRule]
    subsections: Rules[SubsectionRule]


# --- compat-schema-safe.json, schema-renames.json -----------------------------------------------
class SchemaSafe(Record, frozen=True):
    """``compat-schema-safe.json``."""

    description: str
    safe: dict[str, str]  # "vmsd/@subsection" or "vmsd/field" -> why it is safe
    unlisted: dict[str, str]  # vmsd -> which build loads it unlisted, and the evidence


class FieldRename(Record, frozen=True):
    vmsd: str
    old: str = msgspec.field(name="from")
    new: str = msgspec.field(name="to")
    why: str


class DeviceRename(Record, frozen=True):
    old: str = msgspec.field(name="from")
    new: str = msgspec.field(name="to")
    why: str


class SchemaRenames(Record, frozen=True):
    """``schema-renames.json`` (each entry holds both ways)."""

    about: str
    fields: tuple[FieldRename, ...]
    devices: tuple[DeviceRename, ...]
