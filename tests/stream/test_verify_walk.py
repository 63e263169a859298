"""verify's numpy walk of a batch of chunks: the words the record loop reads, the same findings."""

from __future__ import annotations

from collections import Counter

import pytest

import miglab
import miglab.stream.verify_ram as verify_ram
from miglab.stream.ram import RamPayload
from miglab.stream.verify import verify
from miglab.stream.verify_walk import _WALK_MIN, PageWords
from miglab.wire import RAM_PAGE_KINDS
from tests.helpers import DATA

# A running guest's stream: 155 RAM chunks, 152 of them with a mixed run of zero and data pages.
REAL = DATA / "live-q72-pc-q35-7.2-dirtier.mig"


def _chunks(stream: miglab.Stream) -> list[RamPayload]:
    return [s.payload for s in stream.sections if isinstance(s.payload, RamPayload)]


def test_the_walk_reads_the_words_the_record_loop_reads():
    stream = miglab.load(REAL)
    chunks = _chunks(stream)
    words = PageWords(chunks[0].source, stream.page_size)
    for k, p in enumerate(chunks):
        runs = p.run_entries()
        assert runs is not None
        words.add(runs, k, len(stream.ram.blocks))
    assert len(words._start) > 10 * _WALK_MIN  # most runs walked side by side, a few read after
    got, block, chunk = words.read()
    want = sorted(
        (k, b, w) for k, p in enumerate(chunks) for w, b, _ in p.records() if w & RAM_PAGE_KINDS
    )
    assert len(want) > 5_000
    assert sorted(zip(chunk.tolist(), block.tolist(), got.tolist(), strict=True)) == want


def _corrupt(kind: str) -> bytes:
    """REAL with one page word inside a mixed run changed."""
    raw = bytearray(REAL.read_bytes())
    chunks = _chunks(miglab.load(REAL))
    sends = Counter(w >> 12 for p in chunks for w, _, _ in p.records() if w & RAM_PAGE_KINDS)
    runs_of = [
        (p, r, i, stop) for p in chunks if (r := p.run_entries()) for i, stop in r.mixed.items()
    ]
    p, runs, i, stop = runs_of[len(runs_of) // 2]
    inside = [(w, at - 8) for w, _, at in p.records() if runs.word_at(i) <= at - 8 < stop]
    if kind == "beyond":
        word, at = inside[len(inside) // 2]
        word |= 1 << 40  # far beyond the block
    else:  # a page sent once takes another's offset: it is never sent
        word, at = next(
            (w, at - 8)
            for p, r, i, stop in runs_of
            for w, _, at in p.records()
            if r.word_at(i) <= at - 8 < stop and sends[w >> 12] == 1
        )
        word &= 0xFFF  # now page 0 (sent anyway)
    raw[at : at + 8] = word.to_bytes(8, "big")
    return bytes(raw)


@pytest.mark.parametrize("kind", ["intact", "beyond", "moved"])
def test_verify_finds_the_same_with_and_without_the_walk(
    kind: str, monkeypatch: pytest.MonkeyPatch
):
    data = REAL.read_bytes() if kind == "intact" else _corrupt(kind)
    monkeypatch.setattr(verify_ram, "_NUMPY_FROM", 1 << 62)
    by_loop = [f.to_dict() for f in verify(data)]
    monkeypatch.setattr(verify_ram, "_NUMPY_FROM", 0)
    walked = [f.to_dict() for f in verify(data)]
    assert walked == by_loop
    codes = {f["code"] for f in walked}
    if kind == "beyond":
        assert "page-beyond-block" in codes
    elif kind == "moved":
        assert "page-never-sent" in codes
    else:
        assert not codes & {"page-beyond-block", "page-never-sent"}
