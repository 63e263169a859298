"""miglab.stream on streams of running guests: passes, XBZRLE, legacy sections, round trip.

The oracle of RAM is QEMU's own: after a live migration completes the source is
paused, and its ``pmemsave`` of all RAM (``data/live-*.mem.gz``) is the content
the destination must end with.  :class:`~miglab.stream.pages.RamPages`, the RAM
table and ``miglab extract`` must all show exactly that, page for page.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import miglab
from miglab.errors import MigrationFormatError, TruncatedStreamError
from miglab.stream.extract import extract
from miglab.stream.model import Opaque
from miglab.stream.pages import RamPages
from miglab.stream.ram import RamPayload
from miglab.wire import RamFlag
from tests.helpers import DATA, LIVE, recipe

PAGE = 4096
# pmemsave reads guest-physical memory: 0xA0000-0xFFFFF shows VGA and ROM windows, not pc.ram.
ROM_WINDOW = range(0xA0000 // PAGE, 0x100000 // PAGE)
DIRTIER = [p for p in LIVE if recipe(p)["guest"] == "dirtier"]
XBZRLE = [p for p in DIRTIER if recipe(p)["xbzrle"]]
IDS = [p.stem for p in DIRTIER]


@cache
def _load(path: Path) -> tuple[bytes, miglab.Stream]:
    data = path.read_bytes()
    return data, miglab.load(data)


@cache
def _oracle(path: Path) -> bytes:
    return gzip.decompress((DATA / recipe(path)["oracle"]).read_bytes())


def _comparable(n_pages: int) -> list[int]:
    return [n for n in range(n_pages) if n not in ROM_WINDOW]


@pytest.mark.parametrize("path", LIVE, ids=[p.stem for p in LIVE])
def test_every_live_capture_round_trips_byte_exact(path: Path) -> None:
    data, stream = _load(path)
    assert stream.to_bytes() == data
    # Nothing is left undecoded: the slirp sections are decoded too.
    assert [s.name for s in stream.sections if isinstance(s.payload, Opaque)] == []


@pytest.mark.parametrize("path", DIRTIER, ids=IDS)
def test_ram_travels_in_several_passes(path: Path) -> None:
    _, stream = _load(path)
    chunks = [s for s in stream.sections if isinstance(s.payload, RamPayload)]
    assert [c.kind.value for c in chunks[:1]] == ["start"] and chunks[-1].kind.value == "end"
    assert len(chunks) > 20  # many PART chunks, each ending in EOS
    pages = RamPages(stream)
    sends = pages.sends("pc.ram")
    dirtied = range(0x200, 0x200 + recipe(path)["dirty_pages"])
    assert pages.resent > 0 and sends.max() >= 3
    assert (sends[list(dirtied)] >= 2).all()  # every page the guest dirties went again
    assert pages.pages == pages.records - pages.resent


@pytest.mark.parametrize("path", DIRTIER, ids=IDS)
def test_final_ram_is_the_sources_memory(path: Path) -> None:
    _, stream = _load(path)
    mem = _oracle(path)
    ram = RamPages(stream).block_bytes("pc.ram")
    assert len(ram) == len(mem)
    bad = [
        n
        for n in _comparable(len(mem) // PAGE)
        if ram[n * PAGE : (n + 1) * PAGE] != mem[n * PAGE : (n + 1) * PAGE]
    ]
    assert bad == []


@pytest.mark.parametrize("path", DIRTIER, ids=IDS)
def test_the_first_copy_of_a_resent_page_is_not_its_final_content(path: Path) -> None:
    """Last wins matters: taking any earlier copy would show stale counters."""
    _, stream = _load(path)
    mem = _oracle(path)
    n = 0x200
    first = None
    for s in stream.sections:
        p = s.payload
        if not isinstance(p, RamPayload):
            continue
        kinds = (p.flags & ~np.uint32(RamFlag.CONTINUE)) == RamFlag.PAGE
        hit = np.nonzero(kinds & (p.offsets == np.uint64(n * PAGE)) & (p.block >= 0))[0]
        for i in hit:
            if stream.ram.blocks[int(p.block[i])].name == "pc.ram":
                first = bytes(p.payload(int(i)))
                break
        if first is not None:
            break
    assert first is not None and first != mem[n * PAGE : (n + 1) * PAGE]
    assert RamPages(stream).page("pc.ram", n) == mem[n * PAGE : (n + 1) * PAGE]


@pytest.mark.parametrize("path", XBZRLE, ids=[p.stem for p in XBZRLE])
def test_xbzrle_pages_decode_to_the_sources_memory(path: Path) -> None:
    _, stream = _load(path)
    mem = _oracle(path)
    pages = RamPages(stream)
    assert pages.xbzrle > 50
    kinds = pages.final_kinds("pc.ram")
    ended_in_delta = [n for n, k in enumerate(kinds) if k == "xbzrle" and n not in ROM_WINDOW]
    assert ended_in_delta  # pages whose final content only a decoded delta gives
    for n in ended_in_delta:
        assert pages.page("pc.ram", n) == mem[n * PAGE : (n + 1) * PAGE]


@pytest.mark.parametrize("path", DIRTIER, ids=IDS)
def test_ram_frame_counts_final_pages(path: Path) -> None:
    _, stream = _load(path)
    mem = _oracle(path)
    row = miglab.ram_frame(stream).set_index("block").loc["pc.ram"]
    n_pages = len(mem) // PAGE
    assert row["pages"] == n_pages  # each page once, however often it was sent
    zero = bytes(PAGE)
    kinds = RamPages(stream).final_kinds("pc.ram")
    for n in _comparable(n_pages):
        assert (kinds[n] == "zero") == (mem[n * PAGE : (n + 1) * PAGE] == zero)
    assert row["zero_pages"] + row["data_pages"] == n_pages


def _record_bytes(stream: miglab.Stream) -> dict[str, int]:
    """Bytes of every block's records (word, name where written, payload), per record."""
    out = dict.fromkeys((b.name for b in stream.ram.blocks), 0)
    for sec in stream.sections:
        p = sec.payload
        if isinstance(p, RamPayload):
            cols = (p.block.tolist(), p.named.tolist(), p.length.tolist())
            for b, n, length in zip(*cols, strict=True):
                if b >= 0:
                    name = stream.ram.blocks[b].name
                    out[name] += 8 + length + n * (len(name.encode()) + 1)
    return out


@pytest.mark.parametrize("held", ["runs", "re-read", "expanded"])
@pytest.mark.parametrize("path", DIRTIER, ids=IDS)
def test_ram_frame_agrees_with_the_page_index_however_chunks_are_held(
    path: Path, held: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ram_frame settles the chunks' page words a batch at a time; RamPages
    # indexes every record and takes each page's last one: the same counts,
    # whether a chunk keeps its run entries, is read again or was expanded.
    if held == "re-read":
        monkeypatch.setattr("miglab.stream.ram._INDEX_BUDGET", 0)
    stream = miglab.load(path)  # mapped: the batches release its pages
    if held == "expanded":
        for sec in stream.sections:
            if isinstance(sec.payload, RamPayload):
                assert len(sec.payload.words)
    frame = miglab.ram_frame(stream).set_index("block")
    counts = RamPages(stream).block_counts()
    assert frame["pages"].tolist() == counts["pages"]
    assert frame["zero_pages"].tolist() == counts["final_zero_pages"]
    assert frame["bytes"].to_dict() == _record_bytes(stream)


@pytest.mark.parametrize("path", DIRTIER, ids=IDS)
def test_extract_writes_the_final_content(path: Path, tmp_path: Path) -> None:
    result = extract(path, tmp_path / "out")
    mem = _oracle(path)
    name = next(f for f, b in result.files.items() if b == "pc.ram")
    ram = (tmp_path / "out" / name).read_bytes()
    for n in _comparable(len(mem) // PAGE):
        assert ram[n * PAGE : (n + 1) * PAGE] == mem[n * PAGE : (n + 1) * PAGE], hex(n)


def _first_xbzrle(stream: miglab.Stream) -> int:
    """Input offset of the first XBZRLE delta (after ``u8 1, be16 len``)."""
    for s in stream.sections:
        p = s.payload
        if isinstance(p, RamPayload):
            hit = np.nonzero((p.flags & np.uint32(RamFlag.XBZRLE)) != 0)[0]
            if len(hit):
                return int(p.pos[hit[0]]) + 3
    raise AssertionError("no XBZRLE record")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (b"\xff\xff", "exceeds 14 bits"),  # a count of three bytes
        (b"\x00\x00", "data run of 0 bytes"),
        (b"\x00\xff\x7f", "passes the page or the delta"),
    ],
)
def test_a_bad_xbzrle_delta_is_a_format_error_at_its_byte(patch: bytes, message: str) -> None:
    data, stream = _load(XBZRLE[0])
    at = _first_xbzrle(stream)
    bad = bytearray(data)
    bad[at : at + len(patch)] = patch
    with pytest.raises(MigrationFormatError, match=message) as err:
        miglab.load(bytes(bad))
    assert err.value.offset is not None and at <= err.value.offset < at + len(patch)


def test_an_xbzrle_header_with_the_wrong_encoding_flag_is_refused() -> None:
    data, stream = _load(XBZRLE[0])
    at = _first_xbzrle(stream) - 3
    bad = bytearray(data)
    bad[at] = 2
    with pytest.raises(MigrationFormatError, match="encoding flag") as err:
        miglab.load(bytes(bad))
    assert err.value.offset == at


def test_a_legacy_section_without_a_model_is_an_opaque_marked_span() -> None:
    """Rename slirp (same length, header and vmdesc): no model knows it, so it is kept whole."""
    path = next(p for p in LIVE if recipe(p)["guest"] == "ipxe-http")
    data, stream = _load(path)
    section = next(s for s in stream.sections if s.name == "slirp")
    bad = bytearray(data)
    bad[section.offset + 6 : section.offset + 11] = b"slirq"
    vmdesc_at = bad.rindex(b'"name": "slirp"')
    bad[vmdesc_at : vmdesc_at + 15] = b'"name": "slirq"'
    loaded = miglab.load(bytes(bad))
    kept = next(s for s in loaded.sections if s.name == "slirq")
    assert isinstance(kept.payload, Opaque)
    assert "legacy" in kept.payload.reason and "slirq" in kept.payload.reason
    assert len(kept.payload) == section.size - (1 + 4 + 1 + 5 + 4 + 4) - 5
    # The rest decodes as before, and the stream is written back byte for byte.
    assert sum(not s.decoded for s in loaded.sections) == 1
    assert loaded.to_bytes() == bytes(bad)
    entry = next(d for d in loaded.vmdesc["devices"] if d["name"] == "slirq")
    assert entry["size"] == len(kept.payload)


@pytest.mark.parametrize("path", LIVE, ids=[p.stem for p in LIVE])
def test_a_live_stream_cut_anywhere_is_a_truncation_error(path: Path) -> None:
    """Cuts inside RAM passes, XBZRLE deltas and the slirp section, and around them."""
    data, stream = _load(path)
    slirp = next(s for s in stream.sections if s.name == "slirp")
    chunks = [s for s in stream.sections if isinstance(s.payload, RamPayload)]
    starts = [slirp.offset, *(c.offset for c in chunks[1::29])]
    if path in XBZRLE:
        starts.append(_first_xbzrle(stream) - 11)
    cuts = {n for at in starts for n in range(at - 4, at + 20)}
    cuts |= set(range(slirp.offset, slirp.offset + slirp.size, 4099))
    for n in sorted(cuts):
        with pytest.raises(TruncatedStreamError) as err:
            miglab.load(data[:n])
        assert err.value.offset is not None and err.value.offset <= n, n
