"""Hostile input to every decoder ends in a MiglabError, never another exception."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import miglab
from miglab import encoders
from miglab.encoders import asn1
from miglab.encoders.bench import device_state
from miglab.errors import MiglabError
from tests.helpers import STREAMS

_NET = next(p for p in STREAMS if p.stem == "q100-pc-q35-10.0-usb")
# A small but complete stream (device state of a real one) keeps each example fast.
_STREAM = device_state(miglab.load(_NET))
_ENCODED = {fmt: encoders.encode(_STREAM, fmt) for fmt in encoders.names()}
_KW = {"asn1-per": {"schema": asn1.schema_text(_STREAM)}}
_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def attempt(fmt: str, data: bytes) -> None:
    with contextlib.suppress(MiglabError):
        encoders.get(fmt).decode(data, **_KW.get(fmt, {}))


@pytest.mark.parametrize("fmt", encoders.names())
def test_truncated(fmt: str) -> None:
    data = _ENCODED[fmt]
    for n in (0, 1, 5, 13, 40, len(data) // 3, len(data) // 2, len(data) - 1):
        with pytest.raises(MiglabError):
            encoders.get(fmt).decode(data[:n], **_KW.get(fmt, {}))


@pytest.mark.parametrize("fmt", encoders.names())
@_SETTINGS
@given(data=st.data())
def test_bit_flips(fmt: str, data: st.DataObject) -> None:
    raw = bytearray(_ENCODED[fmt])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    attempt(fmt, bytes(raw))


@pytest.mark.parametrize("fmt", encoders.names())
@_SETTINGS
@given(tail=st.binary(max_size=200))
def test_garbage_after_a_valid_head(fmt: str, tail: bytes) -> None:
    attempt(fmt, _ENCODED[fmt][:16] + tail)


@pytest.mark.parametrize("fmt", encoders.names())
@_SETTINGS
@given(junk=st.binary(max_size=300))
def test_garbage(fmt: str, junk: bytes) -> None:
    attempt(fmt, junk)


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        # Declared lengths far beyond the input must not allocate.
        ("cbor", b"\xd9\xd9\xf7\x9b\x00\x00\x00\x01\x00\x00\x00\x00"),  # array of 2**32 items
        ("cbor", b"\xd9\xd9\xf7\x5b\x00\x00\x00\x10\x00\x00\x00\x00"),  # 64 GiB byte string
        ("msgpack", b"\x81\xa6miglab\xdd\xff\xff\xff\xff"),  # array32 of 2**32-1 items
        ("msgpack", b"\x81\xa6miglab\xc6\xff\xff\xff\xff"),  # bin32 of 4 GiB
        ("json", b'{"miglab":' + b"[" * 100000),  # deep nesting
        ("cbor", b"\xd9\xd9\xf7" + b"\x81" * 100000),
        ("msgpack", b"\x81\xa6miglab" + b"\x91" * 100000),
        ("asn1-ber", _ENCODED["asn1-ber"][:13] + b"\xff\xff\xff\xff"),  # a 4 GiB table
        ("asn1-per", _ENCODED["asn1-per"][:13] + b"\xff\xff\xff\xff"),
        ("asn1-ber", _ENCODED["asn1-ber"][:-40] + b"\xa5\x84\xff\xff\xff\xff"),
        ("sized", b"MLSZ\x00\x00\x00\x01QEVM\x00\x00\x00\x03\x04\x00\x00\x00\x01"),
        ("json", b'{"miglab":2,"descs":[[1,2,3,[[{"$b":"!!"}]],[]]]}'),
        ("json", b'{"miglab":2}'),
    ],
)
def test_crafted(fmt: str, data: bytes) -> None:
    with pytest.raises(MiglabError):
        encoders.get(fmt).decode(data, **_KW.get(fmt, {}))


# --- round two (issue 17): each input below was a hole -------------------------------
_JSON = _ENCODED["json"].decode()


def test_cbor_shared_references_are_refused() -> None:
    import cbor2

    plain = cbor2.loads(_ENCODED["cbor"][3:])
    plain["records"] = [plain["records"][0]] * 2  # written once, referenced twice (tags 28/29)
    shared = b"\xd9\xd9\xf7" + cbor2.dumps(plain, value_sharing=True)
    assert b"\xd8\x1d" in shared
    with pytest.raises(MiglabError, match="shared or string references"):
        encoders.decode(shared, "cbor")  # 13 KB became 697 MB before


def test_cbor_string_references_are_refused() -> None:
    import cbor2

    plain = cbor2.loads(_ENCODED["cbor"][3:])
    with pytest.raises(MiglabError, match="shared or string references"):
        encoders.decode(b"\xd9\xd9\xf7" + cbor2.dumps(plain, string_referencing=True), "cbor")


def test_an_int_field_wider_than_qemus_is_refused() -> None:
    tree = json.loads(_JSON)
    field = next(f for d in tree["descs"] for f in d[3] if f[1] == "uint32")
    field[2] = 1 << 32  # one number, written out as 4 GiB by to_bytes() before
    with pytest.raises(MiglabError, match="is 4294967296 bytes wide"):
        encoders.decode(json.dumps(tree).encode(), "json")


@pytest.mark.parametrize(
    "text", ['"target_page_bits"', '"configuration/target-page-bits"', '"S","f",0,"timer"']
)
def test_a_lone_surrogate_in_a_name_is_refused(text: str) -> None:
    assert text in _JSON
    bad = _JSON.replace(text, text.replace(text.split('"')[-2], "\\ud800"), 1)
    with pytest.raises(MiglabError, match="not writable text"):
        encoders.decode(bad.encode(), "json")  # to_bytes() gave a UnicodeEncodeError before


def test_cbor_errors_carry_the_offset_of_the_bad_item() -> None:
    data = _ENCODED["cbor"]
    # the head of page_size's value (4096: 19 10 00), made reserved (1c: RFC 8949 3.3)
    head = data.index(b"\x69page_size\x19\x10\x00") + 10
    bad = data[:head] + b"\x1c" + data[head + 1 :]
    with pytest.raises(MiglabError) as exc:
        encoders.decode(bad, "cbor")
    assert exc.value.offset == head
    # cut inside the vmdesc text: the short item is its payload (after a 3-byte head, 79 LL LL)
    text = data.index(b"\x66vmdesc\x79") + 7
    with pytest.raises(MiglabError) as exc:
        encoders.decode(data[: text + 3 + 100], "cbor")
    assert exc.value.offset == text + 3
