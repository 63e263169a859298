"""miglab.encoders.asn1 (asn1_module, asn1_types, asn1_ram): the typed module and its values.

asn1tools is pure Python and slow, so the value mapping (stream <-> the module's
values, RAM runs, the regenerated vmdesc) runs on every stream without it, and
asn1tools itself on a few (here and in test_encoders.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import asn1tools
import pytest

import miglab
from miglab import encoders
from miglab.encoders import asn1
from miglab.encoders.asn1_module import DESCRIPTIONS, desc_rows, desc_values
from miglab.encoders.bench import device_state
from miglab.errors import EncodingError, LimitExceeded, MiglabError
from miglab.limits import budget
from miglab.stream.ram import RamPayload
from tests.helpers import STREAMS

_NET = next(p for p in STREAMS if p.stem == "q72-pc-i440fx-7.2-net")


@pytest.fixture(scope="module")
def net() -> miglab.Stream:
    return miglab.load(_NET)


def _value_roundtrip(stream: miglab.Stream) -> tuple[miglab.Stream, dict[str, Any]]:
    """The stream through the module's values and back, without asn1tools."""
    t = asn1._Table(stream)
    value = asn1._stream_value(stream, t)
    rows, indexes = desc_rows(desc_values(t.rows, t.indexes))
    assert indexes == t.indexes
    assert rows == [[*r[:3], [f + [None] * (12 - len(f)) for f in r[3]], r[4]] for r in t.rows]
    return asn1._stream_of(value, t.table, 0), value


def test_value_mapping_every_stream() -> None:
    """Every stream in data/ goes through the module's values and back byte for byte, and its
    vmdesc is regenerated from the states, not carried (q72-pc-i440fx-2.2 has none)."""
    for path in STREAMS:
        raw = path.read_bytes()
        stream = miglab.load(raw)
        back, value = _value_roundtrip(stream)
        assert back.to_bytes() == raw, path.name
        if stream.vmdesc is not None:
            assert value["vmdesc"][0] == "regenerated", path.name
        else:
            assert "vmdesc" not in value


def test_an_edited_vmdesc_travels_as_text(net: miglab.Stream) -> None:
    s = miglab.load(net.to_bytes())
    assert s.vmdesc is not None
    s.vmdesc["devices"][0]["name"] = "renamed"
    back, value = _value_roundtrip(s)
    assert value["vmdesc"][0] == "text"
    assert back.to_bytes() == s.to_bytes()


def test_zero_pages_are_runs(net: miglab.Stream) -> None:
    """A stretch of zero pages is one run whose fill byte travels once."""
    value = asn1._stream_value(net, asn1._Table(net))
    i, sec = max(
        ((i, s) for i, s in enumerate(net.records) if isinstance(s.payload, RamPayload)),
        key=lambda x: len(x[1].payload.words),
    )
    ram = value["records"][i][1]["payload"][1]
    assert len(ram["runs"]) < len(sec.payload.words) / 10
    assert any(r.get("repeated") and r.get("count", 1) > 100 for r in ram["runs"])


def test_a_plain_asn1tools_reads_the_stream_by_name(net: miglab.Stream) -> None:
    """The module is a real typed module: asn1tools parses its text to the types miglab
    compiles, and decodes the PER bytes with it alone, finding the e1000's registers."""
    text = asn1.schema_text(net)
    parsed = asn1tools.parse_string(text)  # pyparsing: seconds; parsed once
    assert parsed == asn1._Table(net).module.parsed()
    assert asn1tools.parse_string(DESCRIPTIONS.text) == DESCRIPTIONS.parsed()
    e1000 = net.device("e1000")
    head = f"-- e1000 version {e1000.version_id}\n"
    body = text[text.index(head) :].split("}\n", 1)[0]
    assert f"{asn1.identifier('mac_reg[0]')} SEQUENCE (SIZE(32)) OF INTEGER (0..4294967295)" in body
    data = encoders.encode(net, "asn1-per")
    n = int.from_bytes(data[13:17], "big")
    value = asn1tools.compile_dict(parsed, "per").decode("Stream", data[17 + n :])
    sections = [r for kind, r in value["records"] if kind == "section"]
    sec = next(r for r in sections if r["name"] == ("text", e1000.name))
    _alternative, state = sec["payload"][1]["state"]
    assert state[asn1.identifier("mac_reg[0]")] == e1000.payload.fields["mac_reg[0]"]
    assert state[asn1.identifier("rxbuf_size")] == e1000.payload.fields["rxbuf_size"]


def test_per_decodes_alone_and_checks_a_schema_given(net: miglab.Stream) -> None:
    dev = device_state(net)
    data = encoders.encode(dev, "asn1-per")
    assert encoders.decode(data).to_bytes() == dev.to_bytes()
    with pytest.raises(EncodingError, match=r"encoded with ASN\.1 schema"):
        encoders.decode(data, schema=asn1.schema_text(dev) + "-- another module\n")
    assert len(data) < 0.9 * len(dev.to_bytes())


# --- hostile input: values asn1tools accepts, miglab must refuse -----------------------


def _craft(stream: miglab.Stream, codec: str, descs: Any = None, edit: Any = None) -> bytes:
    """``stream`` encoded with its description table replaced by ``descs`` and/or its value
    edited by ``edit`` (a valid header and schema id: only miglab's checks can refuse it)."""
    t = asn1._Table(stream)
    value = asn1._stream_value(stream, t)
    if edit is not None:
        edit(value)
    d = descs if descs is not None else desc_values(t.rows, t.indexes)
    rows, indexes = desc_rows(d)
    from miglab.encoders.asn1_module import stream_module, with_indexes
    from miglab.encoders.desc_table import read_descs

    try:
        module = stream_module(with_indexes(read_descs(rows), indexes))
    except EncodingError:
        module = t.module  # the table itself is what is refused
    head = asn1.MAGIC + codec[0].upper().encode() + asn1.schema_id(module.text)
    part1 = asn1._compiled(DESCRIPTIONS, codec).encode("Descriptions", d)
    body = asn1._compiled(t.module, codec).encode("Stream", value) if edit is not None else b""
    return head + len(part1).to_bytes(4, "big") + part1 + body


def _zero_width(n: int | None, num_field: bool) -> list[Any]:
    empty = {"name": ("text", "pad"), "info": ("other", "buffer"), "size": 0}
    holder: dict[str, Any] = {"name": ("text", "a"), "info": ("other", "struct"), "size": 0}
    holder["struct"] = 0
    if num_field:
        holder["num-field"] = "n"
    else:
        holder["num"] = n
    count = {"name": ("text", "n"), "info": ("known", 7), "size": 4}  # uint32
    return [
        {
            "name": ("text", "empty"),
            "version": 1,
            "minimum-version": 0,
            "fields": [empty],
            "subsections": [],
        },
        {
            "name": ("text", "dev"),
            "version": 1,
            "minimum-version": 0,
            "fields": [count, holder],
            "subsections": [],
        },
    ]


@pytest.mark.parametrize("codec", ["per", "ber"])
@pytest.mark.parametrize(
    ("num", "num_field", "match"),
    [
        (1 << 40, False, "unrolls to more than"),  # 2**40 empty structs, no input read
        (None, True, "variable-length array of elements that take no bits"),
    ],
)
def test_descriptions_that_loop_without_input_are_refused(
    net: miglab.Stream, codec: str, num: int | None, num_field: bool, match: str
) -> None:
    data = _craft(device_state(net), codec, descs=_zero_width(num, num_field))
    with pytest.raises(EncodingError, match=match):
        encoders.decode(data, f"asn1-{codec}")


def _first_run(value: dict[str, Any]) -> dict[str, Any]:
    rams = [r for k, r in value["records"] if k == "section" and r["payload"][0] == "ram"]
    return next(run for r in rams for run in r["payload"][1]["runs"] if run.get("repeated"))


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (
            lambda r: r.update(count=1 << 31),
            LimitExceeded,
            "more decoded elements",
        ),  # 2**31 pages from 5 bytes
        (lambda r: r.update(size=4096), EncodingError, "a repeated RAM payload of 4096 bytes"),
        (lambda r: r.update(block=99), EncodingError, "block must be an integer in"),
        (lambda r: r.update(skip=-(1 << 60)), EncodingError, "RAM page offset"),
    ],
)
def test_hostile_ram_runs_are_refused(
    net: miglab.Stream, edit: Any, error: type, match: str
) -> None:
    ram_only = dataclasses.replace(
        net,
        records=[r for r in net.records if isinstance(getattr(r, "payload", None), RamPayload)],
        vmdesc=None,
    )
    data = _craft(ram_only, "per", edit=lambda v: edit(_first_run(v)))
    with pytest.raises(error, match=match), budget(len(data)):
        asn1.decode_per(data)


def test_garbage_after_the_descriptions(net: miglab.Stream) -> None:
    data = encoders.encode(device_state(net), "asn1-per")
    n = int.from_bytes(data[13:17], "big")
    with pytest.raises(MiglabError):
        encoders.decode(data[: 17 + n] + b"\xff" * 64)
