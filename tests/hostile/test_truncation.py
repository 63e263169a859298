"""Truncation: every prefix of a real stream is a MigrationFormatError with an offset.

A stream cut anywhere must fail with :class:`~miglab.errors.TruncatedStreamError`
(a :class:`~miglab.errors.MigrationFormatError`) whose ``offset`` lies inside
the prefix, never with another exception.  Two cuts give a valid stream, and
load accepts them:

* right after QEMU_VM_EOF, before the vmdesc trailer: a stream without
  vmdesc, which QEMU itself writes for old machines.  ``verify`` warns
  (``no-vmdesc``) when the stream has a configuration block.  A cut *inside*
  the vmdesc trailer is a TruncatedStreamError (QEMU would accept it; miglab
  is stricter, because the trailer is part of what it round-trips);
* in a stream with neither footers nor vmdesc (QEMU <= 2.2, and 2.3 once
  its vmdesc is cut off), at a 0x00 byte inside an undescribed device
  section: nothing marks where such a section ends, so the 0x00 reads as
  EOF.  The load then ends in an Opaque section and ``verify`` warns
  (``end-guessed``).

Loading a prefix costs 0.03-0.3 ms (the reader indexes every RAM record up to
the cut), so all 43 streams x 65536 offsets is about 10 CPU minutes; the
per-stream tests spread over both CI workers.  By default every offset of
the first 64 KiB of every stream is checked, plus 1024 random offsets
beyond.  ``MIGLAB_TRUNCATION_QUICK=1`` samples instead, for a quick local run:

* the six streams in ``REPRESENTATIVE`` (QEMU 7.2 and 10.0, i440fx and q35,
  pc-2.3 without configuration, pc-2.2 without vmdesc): every offset below
  2048 (header, configuration, block list, first records), every 31st offset
  up to 64 KiB, every offset within 16 bytes of the EOF/vmdesc boundary, and
  64 random offsets beyond 64 KiB: about 4,200 prefixes each;
* the other 37: every offset below 512, every 509th up to 64 KiB, the
  EOF/vmdesc boundary +-4 and 16 random offsets beyond: about 660 each.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import miglab
from miglab.errors import MiglabError, TruncatedStreamError
from miglab.stream.model import Opaque, Section
from miglab.stream.reader import load as load_bare
from miglab.stream.verify import verify
from miglab.vmstate.from_vmdesc import description_from_vmdesc
from tests.helpers import DATA, STREAMS, stream_ids

FULL = os.environ.get("MIGLAB_TRUNCATION_QUICK") != "1"
REPRESENTATIVE = {
    "q72-pc-i440fx-2.2-default.mig",
    "q72-pc-i440fx-2.3-default.mig",
    "q72-pc-i440fx-7.2-default.mig",
    "q72-pc-q35-7.2-default.mig",
    "q100-pc-i440fx-10.0-default.mig",
    "q100-pc-q35-10.0-default.mig",
}


def eof_end(data: bytes) -> int:
    """Offset just after QEMU_VM_EOF (where the vmdesc starts, or the end)."""
    stream = miglab.load(data)
    if stream.vmdesc is None:
        return len(data) - len(stream.trailer)
    return len(data) - len(stream.trailer) - len(stream.vmdesc_json()) - 5


def offsets(path: Path, data: bytes) -> list[int]:
    """The cut offsets checked for one stream (see the module docstring)."""
    rng = random.Random(path.name)
    size = len(data)
    boundary = eof_end(data)
    if FULL:
        picked = set(range(65536)) | {rng.randrange(65536, size) for _ in range(1024)}
        span = 16
    elif path.name in REPRESENTATIVE:
        picked = set(range(2048)) | set(range(2048, 65536, 31))
        picked |= {rng.randrange(65536, size) for _ in range(64)}
        span = 16
    else:
        picked = set(range(512)) | set(range(512, 65536, 509))
        picked |= {rng.randrange(65536, size) for _ in range(16)}
        span = 4
    picked |= set(range(boundary - span, boundary + span + 1))
    return sorted(n for n in picked if 0 <= n < size)


def check_prefix(data: bytes, n: int, boundary: int) -> str:
    """Load ``data[:n]``; returns "truncated" or the reason a clean load is right."""
    prefix = data[:n]
    try:
        stream = miglab.load(prefix)
    except TruncatedStreamError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= n, (n, exc)
        return "truncated"
    except MiglabError as exc:
        raise AssertionError(
            f"cut at {n}: {type(exc).__name__} {exc}, expected a truncation"
        ) from exc
    # Exceptions other than MiglabError propagate and fail the test.
    if n == boundary:
        assert stream.vmdesc is None and stream.to_bytes() == prefix
        if stream.configuration is not None:
            assert "no-vmdesc" in {f.code for f in verify(prefix)}
        return "valid stream without vmdesc"
    last = stream.records[-1]
    assert stream.vmdesc is None and not any(s.footer for s in stream.sections), n
    assert isinstance(last, Section) and isinstance(last.payload, Opaque), n
    assert prefix[-1] == 0, n
    assert "end-guessed" in {f.code for f in verify(prefix)}, n
    return "end guessed (no footers, no vmdesc)"


@pytest.mark.parametrize("path", STREAMS, ids=stream_ids(STREAMS))
def test_every_cut_is_a_truncation_error(path: Path):
    data = path.read_bytes()
    boundary = eof_end(data)
    outcomes: dict[str, int] = {}
    for n in offsets(path, data):
        kind = check_prefix(data, n, boundary)
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert outcomes["truncated"] >= 600
    # The cut between EOF and vmdesc exists only where there is a vmdesc.
    assert outcomes.get("valid stream without vmdesc", 0) == (boundary < len(data))


def test_cut_inside_vmdesc_is_a_truncation():
    data = (DATA / "q72-pc-q35-7.2-default.mig").read_bytes()
    boundary = eof_end(data)
    for n in (boundary + 1, boundary + 5, boundary + 6, (boundary + len(data)) // 2, len(data) - 1):
        with pytest.raises(TruncatedStreamError) as info:
            miglab.load(data[:n])
        assert info.value.offset is not None and info.value.offset <= n


def _cut_sections(name: str) -> list[Section]:
    """Three small device sections after RAM: a cut inside them costs a millisecond."""
    stream = miglab.load(DATA / name)
    small = [s for s in stream.sections if s.name != "ram" and s.size < 200]
    return small[:3]


@pytest.mark.parametrize(
    ("name", "described"),
    [
        ("q72-pc-q35-7.2-default.mig", False),  # footers; undescribed: opaque spans
        ("q72-pc-q35-7.2-default.mig", True),  # footers; decoded with its vmdesc's descriptions
        ("q72-pc-i440fx-2.3-default.mig", False),  # no footers
        ("q72-pc-i440fx-2.3-default.mig", True),
        ("q72-pc-i440fx-2.2-default.mig", False),  # no footers, no vmdesc
    ],
)
def test_a_cut_inside_a_section_names_that_section(name: str, described: bool):
    """Issue 16: the error of a cut names the section the cut lands in, and its offset.

    A prefix has lost the vmdesc at the end; ``described`` gives the reader the
    descriptions that vmdesc held (as the live proxy does), so the sections are decoded
    instead of kept opaque.  Without footers, a cut after a 0x00 byte may read as EOF
    (see :func:`check_prefix`), and a cut right after a section's type byte cannot be
    told from a byte of the section before: both are left out.
    """
    data = (DATA / name).read_bytes()
    whole = load_bare(data)
    descriptions = None
    if described:
        assert whole.vmdesc is not None
        descriptions = {}
        for dev in whole.vmdesc["devices"]:
            if "vmsd_name" in dev:
                descriptions.setdefault(dev["name"], []).append(description_from_vmdesc(dev))
    footers = any(s.footer for s in whole.sections)
    checked = 0
    for section in _cut_sections(name):
        first = section.offset + 1 if footers else section.offset + 2
        idstr_end = section.offset + 6 + len(section.name.encode())
        for n in range(first, section.offset + section.size):
            try:
                load_bare(data[:n], descriptions=descriptions)
            except TruncatedStreamError as exc:
                message = exc.message
                assert exc.offset is not None and section.offset <= exc.offset <= n, (n, message)
                assert f"section {section.name!r}" in message or n < idstr_end, (n, message)
                assert f"at offset {section.offset}:" in message, (n, message)
                checked += 1
            else:
                assert not footers and data[n - 1] == 0, n
    assert checked >= (150 if footers else 25)
