"""The RAM index's runs: found by byte slices, they index and fail exactly as record by record.

``read_ram`` keeps a run of same-kind records as one entry, found by
comparing stepped byte slices of the page words (``miglab.stream.ram_runs``).
The ``record_by_record`` fixture turns runs off (a run would need more
records than any stream has), so every check here compares the two paths on
the same bytes: the per-record columns, the bytes written back, and the
error (type, offset, message) where a run is broken by a bad word.
"""

from __future__ import annotations

import re

import pytest

import miglab
import miglab.stream.ram as ram
import miglab.stream.ram_records as ram_records
from miglab.errors import MiglabError
from miglab.stream.ram import RamPayload
from miglab.stream.synthetic import synthetic_stream
from miglab.stream.verify import verify
from miglab.wire import RamFlag
from tests.helpers import DATA


def ram_chunks(stream: miglab.Stream) -> list[RamPayload]:
    return [s.payload for s in stream.sections if isinstance(s.payload, RamPayload)]


def outcome(data: bytes) -> tuple[str, int | None, str] | list[tuple[int, int, int]]:
    """The error of loading ``data``, or every RAM record ``(word, block, pos)``."""
    try:
        stream = miglab.load(data)
    except MiglabError as exc:
        return type(exc).__name__, exc.offset, str(exc)
    return [rec for p in ram_chunks(stream) for rec in p.records()]


def both(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    fast = outcome(data)
    with monkeypatch.context() as m:
        m.setattr(ram_records, "RUN_MIN", 1 << 40)
        slow = outcome(data)
    return fast, slow


@pytest.mark.parametrize(
    "name", ["q72-pc-q35-7.2-default.mig", "live-q72-pc-q35-7.2-dirtier-xbzrle.mig"]
)
def test_runs_index_a_real_stream_as_record_by_record(name, monkeypatch) -> None:
    data = (DATA / name).read_bytes()
    fast = miglab.load(data)
    with monkeypatch.context() as m:
        m.setattr(ram_records, "RUN_MIN", 1 << 40)
        slow = miglab.load(data)
    entries = sum(len(p._runs.count) for p in ram_chunks(fast) if p._runs is not None)
    records = sum(len(p) for p in ram_chunks(fast))
    assert entries < records / 4  # most of the RAM came in runs
    assert fast.to_bytes() == data  # written back from runs, before any column exists
    pages = [(n, o, f, bytes(d)) for p in ram_chunks(fast) for n, o, f, d in p.pages()]
    assert pages == [(n, o, f, bytes(d)) for p in ram_chunks(slow) for n, o, f, d in p.pages()]
    fast = miglab.load(data)  # again, for the numpy columns (expanded another way)
    for a, b in zip(ram_chunks(fast), ram_chunks(slow), strict=True):
        assert list(a.records()) == list(b.records())
        for col in ("words", "named", "block", "pos", "length"):
            assert getattr(a, col).tolist() == getattr(b, col).tolist(), col
    assert fast.to_bytes() == data  # and from the expanded columns


@pytest.fixture(scope="module")
def zero_run() -> tuple[bytes, int]:
    """A stream of 256 zero pages (one run, 9-byte stride) and its 100th record's word offset."""
    data = synthetic_stream(ram_bytes=256 * 4096, mix={"zero": 1}, seed=0).to_bytes()
    (p,) = (q for q in ram_chunks(miglab.load(data)) if len(q) > 200)
    first = next(i for i, w in enumerate(p.words.tolist()) if w & RamFlag.CONTINUE)
    return data, int(p.pos[first + 100]) - 8


@pytest.mark.parametrize(
    ("byte", "value", "error"),
    [
        (7, 0x02, "names block ''"),  # CONTINUE dropped: a name of length 0 (the fill byte)
        (7, 0x28, "stream ends inside a RAM record"),  # a PAGE record: 4 KiB the stream lacks
        (6, 0x01, "unknown combination of RAM flags 0x122"),  # flag bit in byte 6
        (6, 0x10, None),  # offset bit in byte 6: same flags, a different page
    ],
)
def test_a_run_broken_by_one_word_fails_as_record_by_record(
    zero_run, byte, value, error, monkeypatch
) -> None:
    data, at = zero_run
    bad = bytearray(data)
    bad[at + byte] = value if byte == 7 else bad[at + byte] | value
    fast, slow = both(bytes(bad), monkeypatch)
    assert fast == slow
    if error is None:
        assert isinstance(fast, list)  # it loads
    else:
        assert isinstance(fast, tuple) and re.search(error, fast[2]), fast
        assert fast[1] in (at, at + 8)  # the word, or the name after it


def test_cuts_inside_a_run_fail_as_record_by_record(zero_run, monkeypatch) -> None:
    data, at = zero_run
    for cut in (at, at + 1, at + 8, at + 9, at + 9 * 40 + 3, at + 9 * 140):
        fast, slow = both(data[:cut], monkeypatch)
        assert fast == slow
        assert fast[0] == "TruncatedStreamError" and fast[1] <= cut


def test_chunks_past_the_index_budget_are_read_again_alike(monkeypatch) -> None:
    data = (DATA / "live-q72-pc-q35-7.2-dirtier-xbzrle.mig").read_bytes()
    kept = miglab.load(data)
    found = [(f.code, f.offset) for f in verify(data)]
    with monkeypatch.context() as m:
        m.setattr(ram, "_INDEX_BUDGET", 0)  # no chunk keeps its entries
        again = miglab.load(data)
        assert all(p._runs is None for p in ram_chunks(again))
        assert again.to_bytes() == data
        assert [(f.code, f.offset) for f in verify(data)] == found
        for a, b in zip(ram_chunks(kept), ram_chunks(again), strict=True):
            assert len(a) == len(b) and list(a.records()) == list(b.records())
            assert a.words.tolist() == b.words.tolist() and a.pos.tolist() == b.pos.tolist()


@pytest.fixture(scope="module")
def mixed() -> tuple[bytes, int]:
    """Shuffled zero and data pages, two passes (mixed runs), and a record's word offset inside one."""
    data = synthetic_stream(
        ram_bytes=512 * 4096, mix={"zero": 0.5, "random": 0.25, "repeated": 0.25}, seed=3, passes=2
    ).to_bytes()
    p = max(ram_chunks(miglab.load(data)), key=len)
    return data, int(p.pos[len(p) // 2]) - 8


def test_mixed_runs_index_as_record_by_record(mixed, monkeypatch) -> None:
    data, _ = mixed
    fast, slow = both(data, monkeypatch)
    assert isinstance(fast, list) and fast == slow
    loaded = miglab.load(data)
    chunks = ram_chunks(loaded)
    assert sum(len(p._runs.mixed) for p in chunks if p._runs is not None) == 3  # one a chunk
    entries = sum(len(p._runs.count) for p in chunks if p._runs is not None)
    assert entries < sum(len(p) for p in chunks) / 16
    assert loaded.to_bytes() == data
    with monkeypatch.context() as m:
        m.setattr(ram_records, "RUN_MIN", 1 << 40)
        plain = ram_chunks(miglab.load(data))
    pages = [(n, o, f, bytes(d)) for p in chunks for n, o, f, d in p.pages()]
    assert pages == [(n, o, f, bytes(d)) for p in plain for n, o, f, d in p.pages()]
    for a, b in zip(ram_chunks(miglab.load(data)), plain, strict=True):  # numpy columns
        for col in ("words", "named", "block", "pos", "length"):
            assert getattr(a, col).tolist() == getattr(b, col).tolist(), col


@pytest.mark.parametrize(
    ("byte", "value"),
    [(7, 0x02), (7, 0x28), (7, 0x22), (6, 0x01), (6, 0x10), (7, 0x80), (2, 0x01)],
)
def test_a_mixed_run_broken_by_one_word_fails_as_record_by_record(
    mixed, byte, value, monkeypatch
) -> None:
    data, at = mixed
    bad = bytearray(data)
    bad[at + byte] = value if byte == 7 else bad[at + byte] | value
    fast, slow = both(bytes(bad), monkeypatch)
    assert fast == slow
    found = [(f.code, f.offset, f.message) for f in verify(bytes(bad))]
    with monkeypatch.context() as m:
        m.setattr(ram_records, "RUN_MIN", 1 << 40)
        assert [(f.code, f.offset, f.message) for f in verify(bytes(bad))] == found
    if byte == 2:  # a page 1 TiB into a 2 MiB block
        assert any(code == "page-beyond-block" for code, _, _ in found)


def test_cuts_inside_a_mixed_run_fail_as_record_by_record(mixed, monkeypatch) -> None:
    data, at = mixed
    for cut in (at, at + 1, at + 8, at + 9, at + 4104, at + 5000, at + 40_000):
        fast, slow = both(data[:cut], monkeypatch)
        assert fast == slow
        assert fast[0] == "TruncatedStreamError" and fast[1] <= cut
