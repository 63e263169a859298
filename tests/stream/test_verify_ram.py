"""verify_ram: the pages marked in the reader's pass (SentPages) against check_ram's own pass."""

from __future__ import annotations

import dataclasses

import pytest

import miglab
import miglab.stream.verify_ram as verify_ram
from miglab.stream.ram import RamPayload
from miglab.stream.ram_records import RamBlock
from miglab.stream.reader import load
from miglab.stream.verify_ram import SentPages, check_ram
from tests.helpers import DATA
from tests.stream.test_verify_walk import REAL, _corrupt

STREAMS = {
    "live": lambda: REAL.read_bytes(),
    "beyond": lambda: _corrupt("beyond"),
    "moved": lambda: _corrupt("moved"),
    "idle": lambda: (DATA / "q100-pc-q35-10.0-default.mig").read_bytes(),
}


def _load_marked(data: bytes) -> tuple[miglab.Stream, SentPages]:
    marked = SentPages(len(data))
    stream = load(data, on_ram_chunk=marked)
    stream.ram.on_chunk = None
    return stream, marked


@pytest.mark.parametrize("walk", [False, True])
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_pages_marked_while_reading_give_the_findings_of_the_checks_own_pass(
    name: str, walk: bool, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(verify_ram, "_NUMPY_FROM", 0 if walk else 1 << 62)
    data = STREAMS[name]()
    stream, marked = _load_marked(data)
    chunks = [s for s in stream.sections if isinstance(s.payload, RamPayload)]
    assert marked.marks_for(stream.ram, chunks) is not None  # the reader's marks are used
    with_marks = [f.to_dict() for f in check_ram(stream, None, marked)]
    alone = [f.to_dict() for f in check_ram(load(data))]
    assert with_marks == alone
    codes = {f["code"] for f in alone}
    assert ("page-beyond-block" in codes) == (name == "beyond")
    assert ("page-never-sent" in codes) == (name == "moved")


def test_marks_for_other_blocks_or_other_chunks_are_not_used():
    stream, marked = _load_marked(REAL.read_bytes())
    chunks = [s for s in stream.sections if isinstance(s.payload, RamPayload)]
    assert marked.marks_for(stream.ram, chunks) is not None
    # A chunk read inside a command (not one of the stream's sections): other chunks.
    assert marked.marks_for(stream.ram, chunks[1:]) is None
    # A block list sent again, differently, after the marks were made for the first one.
    other = dataclasses.replace(stream.ram, blocks=[*stream.ram.blocks, RamBlock("extra", 4096)])
    assert marked.marks_for(other, chunks) is None


def test_a_stream_that_does_not_load_leaves_no_usable_marks():
    data = REAL.read_bytes()
    marked = SentPages(len(data))
    with pytest.raises(miglab.MigrationFormatError):
        load(data[: len(data) // 2], on_ram_chunk=marked)
    marked.finish(None)
    assert not marked.usable
