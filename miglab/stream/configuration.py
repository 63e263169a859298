"""The configuration block (QEMU_VM_CONFIGURATION) as a hand-written description.

It is a VMState like any other (migration/savevm.c ``vmstate_configuration``):
the machine type name as a be32 length and a buffer, then optional
subsections.  Writing it by hand, once, lets miglab read it in streams whose
vmdesc does not describe it (QEMU 7.2) and write it when a transform renames
the machine.
"""

from __future__ import annotations

from miglab.vmstate.description import describe, field
from miglab.vmstate.state import VMState

__all__ = ("CONFIGURATION", "configuration_state", "machine_of")

_CAPABILITY = describe("capability", [field("capability", "capability")])

CONFIGURATION = describe(
    "configuration",
    [
        field("len", "uint32"),
        field("name", "buffer", size_field="len"),
    ],
    subsections=[
        describe("configuration/target-page-bits", [field("target_page_bits", "uint32")]),
        describe(
            "configuration/capabilities",
            [
                field("caps_count", "uint32"),
                field("capabilities", "struct", num_field="caps_count", struct=_CAPABILITY),
            ],
        ),
        describe("configuration/uuid", [field("uuid", "buffer", size=16)]),
    ],
)


def machine_of(config: VMState) -> str:
    """The machine type name a configuration block carries."""
    return bytes(config.fields["name"]).decode("utf-8", "replace")


def configuration_state(machine: str, *, target_page_bits: int | None = None) -> VMState:
    """A configuration block for ``machine`` (for synthetic streams and transforms)."""
    raw = machine.encode()
    state = VMState(CONFIGURATION, 1, {"len": len(raw), "name": raw})
    if target_page_bits is not None:
        sub = CONFIGURATION.subsection_named("configuration/target-page-bits")
        assert sub is not None
        state.subsections[sub.name] = VMState(sub, 1, {"target_page_bits": target_page_bits})
    return state
