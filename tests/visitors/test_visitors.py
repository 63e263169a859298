"""Visitor pairs: output then input is the identity; bad values and short input are errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miglab.errors import MiglabError, TruncatedStreamError, VisitorError
from miglab.visitors import (
    ObjectInputVisitor,
    ObjectOutputVisitor,
    QEMUFileInputVisitor,
    QEMUFileOutputVisitor,
    QEMUFileReader,
    QEMUFileWriter,
    Visitor,
    qemu_get_be16,
    qemu_get_be32,
    qemu_put_be16,
    qemu_put_be32,
    visit_end_list,
    visit_end_struct,
    visit_next_list,
    visit_start_list,
    visit_start_struct,
    visit_type_bool,
    visit_type_buffer,
    visit_type_i8,
    visit_type_i16,
    visit_type_i32,
    visit_type_i64,
    visit_type_str,
    visit_type_u8,
    visit_type_u16,
    visit_type_u32,
    visit_type_u64,
    visitor_for,
)

INTS = {
    "u8": (visit_type_u8, 1, False),
    "u16": (visit_type_u16, 2, False),
    "u32": (visit_type_u32, 4, False),
    "u64": (visit_type_u64, 8, False),
    "i8": (visit_type_i8, 1, True),
    "i16": (visit_type_i16, 2, True),
    "i32": (visit_type_i32, 4, True),
    "i64": (visit_type_i64, 8, True),
}


def _int_strategy(size: int, signed: bool) -> st.SearchStrategy[int]:
    bits = size * 8
    if signed:
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


# A record: a list of (kind, value) members visited as a struct with a nested list.
MEMBER = st.one_of(
    *[
        _int_strategy(size, signed).map(lambda x, k=k: (k, x))
        for k, (_, size, signed) in INTS.items()
    ],
    st.booleans().map(lambda x: ("bool", x)),
    st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255).map(lambda x: ("str", x)),
    st.binary(max_size=64).map(lambda x: ("buf", x)),
)
RECORD = st.lists(MEMBER, max_size=12)


def visit_record(v: Visitor, kinds: list[tuple[str, int]], values: list | None) -> list:
    """Visit ``kinds`` (kind, buffer size) as struct ``rec`` with a list ``items``."""
    out = []
    visit_start_struct(v, "rec")
    n = visit_start_list(v, "items", len(kinds))
    for i in range(n):
        kind, size = kinds[i]
        cur = values[i] if values is not None else None
        if kind in INTS:
            out.append(INTS[kind][0](v, None, cur))
        elif kind == "bool":
            out.append(visit_type_bool(v, None, cur))
        elif kind == "str":
            out.append(visit_type_str(v, None, cur))
        else:
            out.append(visit_type_buffer(v, None, cur, size))
        visit_next_list(v)
    visit_end_list(v)
    visit_end_struct(v)
    return out


def _kinds(record: list[tuple[str, object]]) -> list[tuple[str, int]]:
    return [(k, len(x) if isinstance(x, bytes) else 0) for k, x in record]


@settings(max_examples=150, deadline=None)
@given(RECORD)
def test_qemufile_pair_is_the_identity(record: list) -> None:
    kinds, values = _kinds(record), [x for _, x in record]
    w = QEMUFileWriter()
    assert visit_record(QEMUFileOutputVisitor(w), kinds, values) == values
    r = QEMUFileReader(w.getvalue())
    assert visit_record(QEMUFileInputVisitor(r), kinds, None) == values
    assert r.pos == len(w.getvalue())


@settings(max_examples=150, deadline=None)
@given(RECORD)
def test_object_pair_is_the_identity(record: list) -> None:
    kinds, values = _kinds(record), [x for _, x in record]
    v = ObjectOutputVisitor()
    visit_record(v, kinds, values)
    tree = v.complete()
    assert tree == {"items": values}
    assert visit_record(ObjectInputVisitor(tree), kinds, None) == values


@settings(max_examples=100, deadline=None)
@given(RECORD)
def test_qemufile_bytes_are_qemus(record: list) -> None:
    """Each member is its big-endian bytes; nothing else is written (no tags, no lengths)."""
    expected = b""
    for kind, x in record:
        if kind in INTS:
            _, size, signed = INTS[kind]
            expected += int(x).to_bytes(size, "big", signed=signed)
        elif kind == "bool":
            expected += b"\x01" if x else b"\x00"
        elif kind == "str":
            raw = x.encode()
            expected += bytes([len(raw)]) + raw
        else:
            expected += x
    w = QEMUFileWriter()
    visit_record(QEMUFileOutputVisitor(w), _kinds(record), [x for _, x in record])
    assert w.getvalue() == expected


@pytest.mark.parametrize("kind", list(INTS))
@pytest.mark.parametrize(
    "make", [lambda: QEMUFileOutputVisitor(QEMUFileWriter()), ObjectOutputVisitor]
)
def test_out_of_range_integers_are_errors_not_wraps(kind: str, make) -> None:
    fn, size, signed = INTS[kind]
    hi = (1 << (size * 8 - (1 if signed else 0))) - 1
    lo = -(1 << (size * 8 - 1)) if signed else 0
    for bad in (hi + 1, lo - 1, True, 1.0, "1", None):
        v = make()
        visit_start_struct(v, "port")
        with pytest.raises(VisitorError) as err:
            fn(v, "id", bad)
        assert err.value.path == "port.id"
    v = make()
    visit_start_struct(v, "port")
    assert fn(v, "id", hi) == hi and fn(v, "id2", lo) == lo


@pytest.mark.parametrize(
    "make", [lambda: QEMUFileOutputVisitor(QEMUFileWriter()), ObjectOutputVisitor]
)
def test_bool_must_be_a_bool(make) -> None:
    for bad in (1, 0, None, "true"):
        v = make()
        visit_start_struct(v, "port")
        with pytest.raises(VisitorError) as err:
            visit_type_bool(v, "throttled", bad)
        assert err.value.path == "port.throttled"


def test_object_input_checks_types_ranges_and_missing_members() -> None:
    cases = [
        ({"id": 256}, "port.id"),
        ({"id": -1}, "port.id"),
        ({"id": True}, "port.id"),
        ({}, "port.id"),
        ({"id": 1}, "port.throttled"),
        ({"id": 1, "throttled": 1}, "port.throttled"),
    ]
    for tree, path in cases:
        v = ObjectInputVisitor(tree)
        with pytest.raises(VisitorError) as err:
            visit_start_struct(v, "port")
            visit_type_u8(v, "id")
            visit_type_bool(v, "throttled")
        assert err.value.path == path, tree


def test_qemufile_input_rejects_a_bool_byte_other_than_0_or_1() -> None:
    v = QEMUFileInputVisitor(QEMUFileReader(b"\x00\x02"))
    visit_start_struct(v, "port")
    visit_type_u8(v, "id")
    with pytest.raises(MiglabError) as err:
        visit_type_bool(v, "throttled")
    assert (err.value.path, err.value.offset) == ("port.throttled", 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(MEMBER, min_size=1, max_size=6))
def test_truncated_input_fails_at_the_member_it_cuts(record: list) -> None:
    kinds, values = _kinds(record), [x for _, x in record]
    w = QEMUFileWriter()
    visit_record(QEMUFileOutputVisitor(w), kinds, values)
    data = w.getvalue()
    # Each member's byte span, from the encoding rules (independent of the reader).
    spans, pos = [], 0
    for kind, x in record:
        raw = x.encode() if kind == "str" else x
        size = (
            INTS[kind][1] if kind in INTS else 1 if kind == "bool" else len(raw) + (kind == "str")
        )
        spans.append((pos, pos + size))
        pos += size
    for cut in range(len(data)):
        r = QEMUFileReader(data, end=cut)
        with pytest.raises(TruncatedStreamError) as err:
            visit_record(QEMUFileInputVisitor(r), kinds, None)
        i = next(j for j, (start, end) in enumerate(spans) if start <= cut < end)
        assert err.value.path == f"rec.items[{i}]"
        # The offset is where the short read began: the member's start (or,
        # for a string, its body after the length byte).
        assert err.value.offset in (spans[i][0], spans[i][0] + 1)
        assert err.value.offset == spans[i][0] or record[i][0] == "str"


def test_legacy_api_and_visitor_for() -> None:
    w = QEMUFileWriter()
    qemu_put_be16(w, 0x1234)
    qemu_put_be32(w, 0xDEADBEEF)
    v = QEMUFileOutputVisitor(w)
    assert visitor_for(w) is v
    visit_type_u32(visitor_for(w), "guest_connected", 1)
    assert w.getvalue() == bytes.fromhex("1234deadbeef00000001")
    r = QEMUFileReader(w.getvalue())
    assert (qemu_get_be16(r), qemu_get_be32(r)) == (0x1234, 0xDEADBEEF)
    assert visit_type_u32(QEMUFileInputVisitor(r), "guest_connected") == 1
    with pytest.raises(VisitorError):
        visitor_for(QEMUFileWriter())
