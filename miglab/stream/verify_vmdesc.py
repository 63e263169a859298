"""Verify's vmdesc checks: the trailer against the sections present and their sizes.

The vmdesc JSON QEMU writes after EOF lists every device section with the
wire size of each field (``vmstate_save`` with a JSON writer).  Its sizes
added up must be the section's payload, its device list the FULL sections,
its ``configuration`` entry the configuration block, and its page size the
configuration's target page bits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from miglab.findings import ERROR, Finding
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.vmdesc import vmdesc_struct
from miglab.vmstate.state import VMState

__all__ = ("check_vmdesc", "header_size")


def check_vmdesc(stream: Stream) -> Iterator[Finding]:
    """Findings about the vmdesc trailer against the stream (none without one)."""
    vmdesc = stream.vmdesc
    if vmdesc is None:
        return
    full = {(s.name, s.instance_id): s for s in stream.sections if s.kind is SectionKind.FULL}
    listed: set[tuple[str, int]] = set()
    for dev in vmdesc.get("devices", []):
        key = (dev.get("name"), dev.get("instance_id"))
        listed.add(key)
        s = full.get(key)
        if s is None:
            yield Finding(
                ERROR,
                "vmdesc-no-section",
                f"vmdesc lists device {key[0]!r} instance {key[1]} but the stream has no such section",
            )
            continue
        if isinstance(s.payload, VMState):
            try:
                want = _vmdesc_size(dev)
            except _Contradiction as exc:
                yield Finding(ERROR, "vmdesc-size", f"section {s.name!r}: {exc}", offset=s.offset)
                continue
            got = _payload_size(s)
            if want is not None and want != got:
                yield Finding(
                    ERROR,
                    "vmdesc-size",
                    f"section {s.name!r} has {got} payload bytes, its vmdesc sizes add up to {want}",
                    offset=s.offset,
                )
    for key, s in full.items():
        if key not in listed:
            yield Finding(
                ERROR,
                "section-not-in-vmdesc",
                f"section {key[0]!r} instance {key[1]} is not in the vmdesc",
                offset=s.offset,
            )
    cfg = stream.configuration
    entry = vmdesc.get("configuration")
    if cfg is not None and entry is not None:
        why: str | None = None
        try:
            in_vmdesc = _vmdesc_size(entry)
        except _Contradiction as exc:
            in_vmdesc, why = None, f"the vmdesc's configuration entry contradicts itself: {exc}"
        in_block = _vmdesc_size(vmdesc_struct(cfg))
        if why is not None or in_vmdesc != in_block:
            yield Finding(
                ERROR,
                "vmdesc-configuration",
                why
                or f"the vmdesc's configuration entry adds up to {in_vmdesc} bytes, the "
                f"configuration block (machine {stream.machine!r}) to {in_block}: stale after an edit?",
                offset=9,  # the configuration block follows magic, version and its 0x07 byte
            )
    bits = cfg.subsections.get("configuration/target-page-bits") if cfg is not None else None
    page = vmdesc.get("page_size")
    if bits is not None and isinstance(page, int):
        cfg_page = 1 << min(int(bits.fields["target_page_bits"]), 62)
        if cfg_page != page:
            yield Finding(
                ERROR,
                "page-size",
                f"configuration says {cfg_page}-byte target pages, the vmdesc says {page}",
            )


def header_size(s: Section) -> int:
    """Bytes of a START/FULL section's header."""
    return 1 + 4 + 1 + len(s.name.encode("utf-8", "surrogateescape")) + 4 + 4


def _payload_size(s: Section) -> int:
    """Payload bytes of a FULL section: its size less header and footer."""
    return s.size - header_size(s) - (5 if s.footer else 0)


class _Contradiction(Exception):
    """A vmdesc entry that disagrees with itself (the message says where)."""


def _vmdesc_size(entry: Any, depth: int = 0) -> int | None:
    """Bytes a vmdesc device (or struct) entry says are on the wire; None if unsure.

    Raises:
        _Contradiction: a struct's stated size is not what its fields add up to.
    """
    # dict, not Mapping: parsed JSON holds dicts, and an ABC check costs 10x.
    if not isinstance(entry, dict) or depth > 64:
        return None
    total = 0
    for f in entry.get("fields", []):
        if not isinstance(f, dict):
            return None
        n = f.get("array_len", 1)
        if not isinstance(n, int):
            return None
        if f.get("type") in ("struct", "vstruct", "tmp"):
            nested = f.get("struct") if f.get("type") != "tmp" else f
            inner = _vmdesc_size(nested, depth + 1)
            declared = f.get("size")
            if isinstance(declared, int) and inner is not None and declared != inner:
                # QEMU writes a struct's size as the bytes it took (vmsd_desc_field_end).
                raise _Contradiction(
                    f"its vmdesc says struct {f.get('name')!r} takes {declared} bytes, "
                    f"the struct's own fields add up to {inner}"
                )
        else:
            inner = f.get("size")
        if not isinstance(inner, int):
            return None
        total += inner * n
    for sub in entry.get("subsections", []):
        inner = _vmdesc_size(sub, depth + 1)
        name = sub.get("vmsd_name") if isinstance(sub, dict) else None
        if inner is None or not isinstance(name, str):
            return None
        total += 1 + 1 + len(name.encode()) + 4 + inner  # QEMU_VM_SUBSECTION, name, version
    return total
