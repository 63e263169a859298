"""Safety limits for untrusted input, as named settings.

A migration stream comes from another machine.  Every length, count and
depth read from it is checked against what remains of the input *and*
against these limits before miglab allocates or loops on it, so a hostile
stream costs at most a small multiple of its own size in memory and time.
Change them on the :data:`LIMITS` object (e.g. in a notebook) when a real
stream needs more.  Nothing read from the input is ever evaluated or
unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("LIMITS", "Limits")


@dataclass(slots=True)
class Limits:
    """The limits in force.

    Attributes:
        max_vmdesc_bytes: largest vmdesc JSON trailer accepted.
        max_depth: deepest nesting of structs/subsections (vmdesc, schema, tree).
        max_sections: most records (sections + commands) in one stream.
        max_array_elements: most elements in one array field.
        max_schema_bytes: largest ``-dump-vmstate`` schema file accepted.
        max_packaged_depth: most nested PACKAGED command blobs.
        max_decompressed_bytes: most bytes a compressed container may expand to.
        max_expansion_ratio: most decompressed bytes per compressed byte (a
            "zip bomb" bound; a first 64 MiB are always allowed).
        max_container_depth: most containers nested in one another.
        max_snapshots: most internal snapshots read from one qcow2 table.
        max_section_bytes: largest non-RAM record a live stream may make the proxy hold
            in memory (device sections and commands are held whole; RAM pages are not).
    """

    max_vmdesc_bytes: int = 64 << 20
    max_depth: int = 32
    max_sections: int = 1 << 20
    max_array_elements: int = 1 << 22
    max_schema_bytes: int = 64 << 20
    max_packaged_depth: int = 2
    max_decompressed_bytes: int = 64 << 30
    max_expansion_ratio: int = 4096
    max_container_depth: int = 4
    max_snapshots: int = 65536
    max_section_bytes: int = 64 << 20


LIMITS = Limits()
