"""miglab.vmstate.sizing: the sizing visitor on the one walk, against QEMU's own bytes.

Sizes must be what the QEMUFile output visitor writes, and every leaf's
offset must point at the leaf's bytes in the stream real QEMU made.
"""

from __future__ import annotations

import pytest

import miglab
from miglab.stream.model import Section
from miglab.visitors import QEMUFileOutputVisitor, QEMUFileWriter
from miglab.vmstate import SizingVisitor, VMState, iter_leaves, visit_vmstate, wire_size
from tests.helpers import DATA

STREAMS = ["q72-pc-i440fx-7.2-net.mig", "q100-pc-q35-10.0-storage.mig", "q72-pc-q35-7.2-usb.mig"]


def _devices(name: str) -> tuple[bytes, list[Section]]:
    raw = (DATA / name).read_bytes()
    s = miglab.load(raw)
    return raw, [r for r in s.records if isinstance(r, Section) and isinstance(r.payload, VMState)]


@pytest.mark.parametrize("name", STREAMS)
def test_wire_size_is_what_the_wire_visitor_writes(name: str) -> None:
    _, sections = _devices(name)
    for s in sections:
        w = QEMUFileWriter()
        visit_vmstate(QEMUFileOutputVisitor(w), s.payload.desc, s.payload)
        assert wire_size(s.payload) == len(w.getvalue()), s.name


@pytest.mark.parametrize("name", STREAMS)
def test_leaf_offsets_point_at_qemus_bytes(name: str) -> None:
    raw, sections = _devices(name)
    checked = 0
    for s in sections:
        header = 1 + 4 + 1 + len(s.name.encode()) + 4 + 4  # QEMU_VM_SECTION_FULL header
        v = SizingVisitor(s.offset + header)
        visit_vmstate(v, s.payload.desc, s.payload)
        for path, f, value, size, offset in v.leaves:
            if f.kind == "int" and isinstance(value, int):
                got = int.from_bytes(raw[offset : offset + size], "big", signed=f.signed)
                assert got == value, (s.name, path)
                checked += 1
            elif f.kind == "bytes" and isinstance(value, bytes):
                assert raw[offset : offset + size] == value, (s.name, path)
        # the section's payload ends where the footer (or the next record) starts
        assert v.pos == s.offset + s.size - (5 if s.footer else 0), s.name
    assert checked > 500


def test_leaves_name_arrays_of_structs_and_subsections() -> None:
    _, sections = _devices("q72-pc-q35-7.2-usb.mig")
    paths = {p for s in sections for p, _, _ in iter_leaves(s.payload)}
    assert any("[1]." in p for p in paths)  # an element of an array of structs
    assert any("/" in p.split(".")[0] for p in paths)  # a subsection member
