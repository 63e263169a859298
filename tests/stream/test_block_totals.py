"""ram_frame's page counts: a page counts once, as its last record left it.

``block_totals`` (what ``ram_frame`` counts with) settles the chunks' page
words a batch at a time.  Real captures never turn a zero page into a data
page or back between passes, so here a synthetic two-pass stream has some
of its resent records rewritten into the other kind, and the counts are
checked against the generator's own page kinds with those edits applied.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

import miglab
import miglab.stream.pages as pages_mod
from miglab.stream.pages import RamPages
from miglab.stream.ram import RamPayload
from miglab.stream.synthetic import page_kinds, synthetic_stream
from miglab.wire import RamFlag

PAGE = 4096
MIX = {"zero": 0.5, "random": 0.5}
SEED = 5
N_PAGES = 1024


def _flipped_stream() -> tuple[bytes, int]:
    """A two-pass stream whose resent records of some pages became the other kind.

    Returns the bytes and the number of pages whose final record is a zero page.
    """
    stream = synthetic_stream(ram_bytes=N_PAGES * PAGE, mix=MIX, seed=SEED, passes=2)
    data = bytearray(stream.to_bytes())
    seen: dict[int, int] = {}
    flips: list[tuple[int, int]] = []  # (word offset, flags) of second copies, in order
    for sec in stream.sections:
        p = sec.payload
        if not isinstance(p, RamPayload):
            continue
        for word, _, at in p.records():
            flags = word & (PAGE - 1)
            if not flags & RamFlag.CONTINUE or not flags & (RamFlag.ZERO | RamFlag.PAGE):
                continue
            page = word // PAGE
            if page in seen and len(flips) < 60:
                flips.append((at - 8, flags))
            seen[page] = flags
    final_zero = int(np.count_nonzero(page_kinds(N_PAGES, MIX, SEED) == 0))
    for word_at, flags in reversed(flips):  # from the end: earlier offsets stay valid
        (word,) = struct.unpack_from(">Q", data, word_at)
        if flags & RamFlag.ZERO:  # a zero page resent as data
            record = struct.pack(">Q", word ^ flags ^ RamFlag.PAGE ^ RamFlag.CONTINUE)
            data[word_at : word_at + 9] = record + b"\x5a" * PAGE
            final_zero -= 1
        else:  # a data page resent as zero
            record = struct.pack(">Q", word ^ flags ^ RamFlag.ZERO ^ RamFlag.CONTINUE)
            data[word_at : word_at + 8 + PAGE] = record + b"\0"
            final_zero += 1
    kinds = {flags & RamFlag.ZERO for _, flags in flips}
    assert kinds == {0, int(RamFlag.ZERO)}  # both ways round
    return bytes(data), final_zero


@pytest.mark.parametrize("batch", [1 << 20, 100], ids=["one-batch", "small-batches"])
def test_a_page_resent_as_the_other_kind_counts_as_its_last_record(
    batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, final_zero = _flipped_stream()
    monkeypatch.setattr(pages_mod, "_BATCH", batch)
    stream = miglab.load(data)
    row = miglab.ram_frame(stream).set_index("block").loc["pc.ram"]
    assert row["pages"] == N_PAGES
    assert row["zero_pages"] == final_zero
    assert row["data_pages"] == N_PAGES - final_zero
    assert RamPages(stream).block_counts()["final_zero_pages"] == [final_zero]
