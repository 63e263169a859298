"""Hostile input: crafted streams that announce huge lengths cost little memory.

Each crafted input claims far more than it carries (a 2 GiB vmdesc, 4 Mi
array elements, a 1 TiB buffer, a 4 GiB PACKAGED blob, a block list adding
up to 2^62 bytes, structs nested 5000 deep, 100k records).  ``load`` must
answer each with a :class:`~miglab.errors.MiglabError` (or a clean load)
while its Python allocations stay within ``RATIO`` times the input plus
1 MiB (tracemalloc), and under a hard address-space limit in a
subprocess (``RLIMIT_AS``).  Records are Python objects, so the worst ratio
is for inputs made of 5-byte command records (about 20x).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

import miglab
from miglab.errors import LimitExceeded, MiglabError
from miglab.limits import LIMITS
from tests.helpers import DATA, ROOT

BASE = (DATA / "q72-pc-q35-7.2-default.mig").read_bytes()
PRE = BASE[: miglab.load(BASE).records[0].offset]  # header + configuration
RATIO = 32


def device(name: str, payload: bytes, sid: int = 50) -> bytes:
    """A FULL section with footer."""
    n = name.encode()
    head = b"\x04" + struct.pack(">I", sid) + bytes([len(n)]) + n + struct.pack(">II", 0, 1)
    return head + payload + b"\x7e" + struct.pack(">I", sid)


def with_vmdesc(body: bytes, vmdesc: str) -> bytes:
    j = vmdesc.encode()
    return body + b"\x00\x06" + struct.pack(">I", len(j)) + j


def one_field(field: dict) -> str:
    dev = {"name": "d", "instance_id": 0, "vmsd_name": "d", "version": 1, "fields": [field]}
    return json.dumps({"page_size": 4096, "devices": [dev]})


def nested(depth: int) -> str:
    inner = '{"vmsd_name": "x", "version": 1, "fields": []}'
    for _ in range(depth):
        inner = (
            '{"vmsd_name": "x", "version": 1, "fields": '
            f'[{{"name": "s", "type": "struct", "size": 0, "struct": {inner}}}]}}'
        )
    dev = '{"name": "d", "instance_id": 0,' + inner[1:]
    return '{"page_size": 4096, "devices": [' + dev + "]}"


VMDESC_AT = BASE.rfind(b"\x00\x06")
CRAFTED = {
    "vmdesc-length-2GiB": BASE[: VMDESC_AT + 2]
    + struct.pack(">I", 0x7FFFFFFF)
    + BASE[VMDESC_AT + 6 :],
    "array-len-4Mi": with_vmdesc(
        PRE + device("d", bytes(64)) + b"\x00",
        one_field({"name": "a", "type": "uint64", "size": 8, "array_len": 1 << 22}),
    ),
    "array-len-1e12": with_vmdesc(
        PRE + device("d", bytes(64)) + b"\x00",
        one_field({"name": "a", "type": "uint8", "size": 1, "array_len": 10**12}),
    ),
    "buffer-1TiB": with_vmdesc(
        PRE + device("d", bytes(64)) + b"\x00",
        one_field({"name": "a", "type": "buffer", "size": 1 << 40}),
    ),
    "nesting-5000": with_vmdesc(PRE + device("d", b"") + b"\x00", nested(5000)),
    "nesting-200": with_vmdesc(PRE + device("d", b"") + b"\x00", nested(200)),
    "packaged-4GiB": PRE + b"\x08\x00\x07\x00\x04\xff\xff\xff\xff" + bytes(64),
    "block-list-2^62": PRE
    + b"\x01\x00\x00\x00\x01\x03ram\x00\x00\x00\x00\x00\x00\x00\x04"
    + struct.pack(">Q", (1 << 62) | 4)
    + (b"\x01a" + struct.pack(">Q", 0)) * 50000,
    "records-100k": PRE + b"\x08\x00\x0b\x00\x00" * 100000 + b"\x00",
    "zero-pages-100k": PRE
    + b"\x01\x00\x00\x00\x01\x03ram\x00\x00\x00\x00\x00\x00\x00\x04"
    + struct.pack(">Q", (1 << 30) | 4)
    + b"\x06pc.ram"
    + struct.pack(">Q", 1 << 30)
    + struct.pack(">Q", 0x10)
    + b"\x02\x00\x00\x00\x01"
    + struct.pack(">Q", 0x02)
    + b"\x06pc.ram\x00"
    + b"".join(struct.pack(">Q", (k << 12) | 0x22) + b"\x00" for k in range(1, 100000))
    + struct.pack(">Q", 0x10)
    + b"\x00",
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_memory_is_a_small_multiple_of_the_input(name: str):
    data = CRAFTED[name]
    tracemalloc.start()
    try:
        miglab.load(data)
    except MiglabError as exc:
        assert exc.offset is not None or exc.path is not None or isinstance(exc, LimitExceeded)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < RATIO * len(data) + (1 << 20), f"{name}: {peak} bytes for {len(data)}"


def test_limits_stop_what_they_name():
    assert LIMITS.max_depth < 5000 and LIMITS.max_array_elements < 10**12
    with pytest.raises(LimitExceeded):
        miglab.load(CRAFTED["array-len-1e12"])
    with pytest.raises(LimitExceeded):
        miglab.load(CRAFTED["nesting-200"])


_CHILD = """
import resource, sys
import miglab
from miglab.errors import MiglabError
peak_kb = int(open("/proc/self/status").read().split("VmPeak:")[1].split()[0])
limit = peak_kb * 1024 + (256 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    try:
        miglab.load(data)
    except MiglabError:
        pass
print("ok")
"""


def test_under_an_address_space_limit(tmp_path: Path):
    paths = []
    for name, data in CRAFTED.items():
        p = tmp_path / f"{name}.mig"
        p.write_bytes(data)
        paths.append(str(p))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *paths], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_nothing_from_the_input_is_evaluated_or_unpickled():
    pattern = re.compile(
        r"(?<![\w.])(eval|exec|compile|__import__)\s*\(|\bpickle\b|\bmarshal\.loads?\b"
        r"|\bshelve\b|yaml\.load\("
    )
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in sorted((ROOT / "miglab").rglob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert hits == []


# --- round two (issue 17): each input below was a hole -------------------------------
def ram_stream(block_bytes: int) -> bytes:
    """A stream whose one RAM block declares ``block_bytes``, one zero page sent."""
    footer = b"\x7e\x00\x00\x00\x01"
    return (
        PRE
        + b"\x01\x00\x00\x00\x01\x03ram\x00\x00\x00\x00\x00\x00\x00\x04"
        + struct.pack(">Q", block_bytes | 4)
        + b"\x06pc.ram"
        + struct.pack(">QQ", block_bytes, 0x10)
        + footer
        + b"\x03\x00\x00\x00\x01"
        + struct.pack(">Q", 0x02)
        + b"\x06pc.ram\x00"
        + struct.pack(">Q", 0x10)
        + footer
        + b"\x00"
    )


def peak_of(fn, *args):
    tracemalloc.start()
    try:
        result = fn(*args)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("walk", [False, True], ids=["loop", "numpy-walk"])
@pytest.mark.parametrize("bits", [42, 62])
def test_verify_does_not_allocate_by_a_declared_block_size(
    bits: int, walk: bool, monkeypatch: pytest.MonkeyPatch
):
    import miglab.stream.verify_ram
    from miglab.stream.verify import verify

    # the pages of a chunk batch are marked in plain Python or, from a size on, with numpy
    monkeypatch.setattr(miglab.stream.verify_ram, "_NUMPY_FROM", 0 if walk else 1 << 62)
    verify(ram_stream(1 << 20))  # imports and caches first: they are not what the peak is about
    found, peak = peak_of(verify, ram_stream(1 << bits))
    assert peak < 1 << 20, peak  # 1.15 GB (2^42) or a MemoryError (2^62) before
    never = [f for f in found if f.code == "page-never-sent"]
    assert len(never) == 1 and f"{(1 << (bits - 12)) - 1} page(s)" in never[0].message


def test_verify_of_a_stream_that_does_not_load_does_not_copy_it():
    from miglab.stream.verify import verify

    data = PRE + b"\x05" + bytes(4 << 20)  # an unknown section type, then 4 MiB
    found, peak = peak_of(verify, data)
    assert found[0].code == "load" or any(f.code == "load" for f in found)
    assert peak < 1 << 20, peak  # bytes(view) copied the 4 MiB before


def zero_field_structs(*counts: int) -> bytes:
    """A vmdesc whose one field is arrays of zero-field structs nested ``counts`` deep."""
    inner: dict = {"vmsd_name": "e", "version": 1, "fields": []}
    for i, n in enumerate(reversed(counts)):
        field = {"name": f"a{i}", "type": "struct", "size": 0, "array_len": n, "struct": inner}
        inner = {"vmsd_name": f"s{i}", "version": 1, "fields": [field]}
    return with_vmdesc(PRE + device("d", b"") + b"\x00", one_field(inner["fields"][0]))


@pytest.mark.parametrize("counts", [(1 << 22,), (1 << 11, 1 << 11), (64, 64, 64, 64)])
def test_decoded_elements_are_budgeted_by_the_input_size(counts: tuple[int, ...]):
    data = zero_field_structs(*counts)
    assert len(data) < 1000
    with pytest.raises(LimitExceeded, match="elements_per_input_byte") as info:
        miglab.load(data)
    assert info.value.path and info.value.path.startswith("d.")


def test_public_calls_raise_miglab_errors(tmp_path: Path):
    from miglab.errors import FileError, NotFoundError
    from miglab.stream.extract import extract

    s = miglab.load(BASE)
    with pytest.raises(NotFoundError, match="no device section 'nope'") as missing:
        s.device("nope")
    assert isinstance(missing.value, KeyError) and str(missing.value).startswith("no device")
    plain = tmp_path / "a-file"
    plain.write_bytes(b"keep")
    calls = {
        "save into a missing directory": lambda: miglab.save(s, tmp_path / "no" / "x.mig"),
        "save under a file": lambda: miglab.save(s, plain / "x.mig"),
        "extract into a file": lambda: extract(s, plain),
        "load a directory": lambda: miglab.load(tmp_path),
        "load a missing file": lambda: miglab.load(tmp_path / "missing.mig"),
    }
    for what, call in calls.items():
        with pytest.raises(FileError) as info:
            call()
        assert isinstance(info.value, OSError) and info.value.errno, what
        assert info.value.path and info.value.path.startswith(str(tmp_path)), what
    assert plain.read_bytes() == b"keep"


def test_section_ids_past_65535_load():
    # The 65,536th section of a stream has id 65536; what mattered was the id
    # (70,000 sections cost 8 s, so the ids start just below the edge).
    ids = range(65500, 65600)
    body = b"".join(device(f"x{i % 7}", b"\x00\x01", sid=i) for i in ids)
    s = miglab.load(PRE + body + b"\x00")
    assert [r.section_id for r in s.records] == list(ids)


@pytest.mark.parametrize(
    ("field", "error"),
    [
        ({"name": "a", "type": "struct", "size": 0}, "without a 'struct'"),
        ({"name": "a", "type": "uint8", "size": 1, "array_len": 10**12}, "exceeds the limit"),
        # item 5: a uint32 declared 2^32 bytes wide (read as a 4 GiB opaque span before)
        ({"name": "a", "type": "uint32", "size": 1 << 32}, "'uint32' is 4 byte"),
        ({"name": "a", "type": "bool", "size": 2}, "'bool' is 1 byte"),
        ({"name": "a", "type": "int64", "size": 8 << 30, "array_len": 4}, "the vmdesc says"),
        # lone surrogates (JSON escapes) in names: the fleet's tables failed to encode them
        ({"name": "\udc80a", "type": "uint8", "size": 1}, "not valid Unicode"),
        ({"name": "a", "type": "\udc80", "size": 1}, "not valid Unicode"),
    ],
)
def test_vmdesc_errors_name_the_vmdesc_offset(field: dict, error: str):
    body = PRE + device("d", b"") + b"\x00"
    with pytest.raises(MiglabError, match=error) as info:
        miglab.load(with_vmdesc(body, one_field(field)))
    assert info.value.offset == len(body) + 6  # where the vmdesc's JSON starts


def test_nesting_error_names_the_vmdesc_offset():
    with pytest.raises(LimitExceeded, match="nested deeper") as info:
        miglab.load(CRAFTED["nesting-200"])
    assert info.value.offset == CRAFTED["nesting-200"].index(b'{"page_size"')


OLD = (DATA / "q72-pc-i440fx-2.2-default.mig").read_bytes()  # no footers, no vmdesc


def test_a_corrupted_header_does_not_merge_sections_silently():
    from miglab.findings import errors
    from miglab.stream.model import Section
    from miglab.stream.verify import verify

    hpet = next(r for r in miglab.load(OLD).records if isinstance(r, Section) and r.name == "hpet")
    bad = bytearray(OLD)
    bad[hpet.offset + 1 + 4 + 1 + len("hpet")] ^= 1  # instance id 0x01000000
    assert len(miglab.load(bytes(bad)).records) == len(miglab.load(OLD).records) - 1
    found = [f for f in errors(verify(bytes(bad))) if f.code == "hidden-section"]
    assert [(f.offset, "'hpet'" in f.message) for f in found] == [(hpet.offset, True)]


def test_a_guessed_end_is_an_error():
    from miglab.findings import errors
    from miglab.stream.verify import verify

    cut = OLD[: OLD.rindex(b"\x00", 0, len(OLD) - 20) + 1]  # after a 0x00 in the last section
    miglab.load(cut)  # loads: the 0x00 reads as EOF
    assert "end-guessed" in {f.code for f in errors(verify(cut))}


def test_an_early_eof_keeps_the_stream_byte_exact():
    from miglab.findings import errors
    from miglab.stream.model import Section
    from miglab.stream.verify import verify

    first = next(r for r in miglab.load(BASE).records if isinstance(r, Section) and r.name != "ram")
    bad = bytearray(BASE)
    bad[first.offset] = 0  # the first device section's type byte flipped to EOF
    s = miglab.load(bytes(bad))
    assert s.vmdesc is None and s.to_bytes() == bytes(bad)  # 516,093 bytes -> 580,150 before
    assert [f.code for f in errors(verify(bytes(bad)))] == ["trailing-bytes"]


def test_a_machine_change_refreshes_the_vmdesc_configuration():
    from miglab.compat.qemu import convert_stream
    from miglab.findings import errors
    from miglab.stream.verify import verify

    stream = miglab.load(DATA / "q100-pc-q35-10.0-default.mig")
    assert stream.vmdesc is not None and "configuration" in stream.vmdesc
    out, report = convert_stream(stream, to_qemu="10.0", machine="pc-q35-7.2")
    assert out.machine == "pc-q35-7.2"
    # the rewritten entry is in the change report (it was not)
    assert [(c.action, c.path, c.before, c.after) for c in report if c.device == "vmdesc"] == [
        ("changed", "configuration/name/size", len("pc-q35-10.0"), len("pc-q35-7.2"))
    ]
    name = next(f for f in out.vmdesc["configuration"]["fields"] if f["name"] == "name")
    assert name["size"] == len("pc-q35-7.2")  # 11, the old 'pc-q35-10.0', before
    assert not [f for f in errors(verify(out.to_bytes())) if f.code == "vmdesc-configuration"]
    stale = miglab.load(out.to_bytes())
    stale.vmdesc["configuration"]["fields"][1]["size"] = 11
    assert "vmdesc-configuration" in {f.code for f in errors(verify(stale.to_bytes()))}


def test_output_is_budgeted_by_the_input_size(tmp_path: Path):
    from miglab.stream.extract import extract

    page = 1 << 28  # a vmdesc may declare any power of two; one zero page of 0xff bytes
    body = ram_stream(page)[:-1].replace(
        b"\x06pc.ram\x00" + struct.pack(">Q", 0x10), b"\x06pc.ram\xff" + struct.pack(">Q", 0x10)
    )
    hostile = with_vmdesc(body, json.dumps({"page_size": page, "devices": []}))
    stream = miglab.load(hostile)
    assert stream.page_size == page and len(hostile) < 1000
    with pytest.raises(LimitExceeded, match="more output than") as info:
        extract(stream, tmp_path / "out")  # wrote 256 MiB before
    assert info.value.path == str(tmp_path / "out" / "ram" / "pc.ram.bin")
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["ram"]


def test_a_vmdesc_struct_size_that_disagrees_with_its_fields_is_an_error():
    """A flip of a digit in a struct's vmdesc ``size`` (276 -> 236) was not noticed:
    the size was recomputed from the struct's fields and the stated one ignored."""
    from miglab.findings import errors
    from miglab.stream.verify import verify

    stream = miglab.load(BASE)
    assert not errors(verify(BASE))
    dev, f = next(
        (d, f) for d in stream.vmdesc["devices"] for f in d.get("fields", [])
        if d["name"].endswith("/mch") and f.get("type") == "struct"  # its PCIDevice parent
    )  # fmt: skip
    declared = f["size"]
    f["size"] -= 40
    found = [x for x in errors(verify(stream.to_bytes())) if x.code == "vmdesc-size"]
    assert [x.message for x in found] == [
        f"section {dev['name']!r}: its vmdesc says struct {f['name']!r} takes {declared - 40} "
        f"bytes, the struct's own fields add up to {declared}"
    ]


@pytest.mark.parametrize(
    "dev",
    [
        {"name": "d\udc80", "instance_id": 0, "vmsd_name": "d", "version": 1, "fields": []},
        {
            "name": "d",
            "instance_id": 0,
            "size": 1,
            "fields": [{"name": "da\udc80", "type": "buffer", "size": 1}],
        },  # a legacy handler's
    ],
)
def test_a_vmdesc_string_that_is_not_unicode_is_refused(dev: dict):
    """Found by the fleet fuzz target: a lone surrogate (a JSON escape) in a device name or a
    legacy entry loaded, then the fleet's tables failed with a UnicodeEncodeError."""
    body = PRE + device("d", b"\x05") + b"\x00"
    data = with_vmdesc(body, json.dumps({"page_size": 4096, "devices": [dev]}))
    with pytest.raises(MiglabError, match="not valid Unicode") as info:
        miglab.load(data)
    assert info.value.offset == len(body) + 6


def test_a_section_name_that_is_not_utf8_gets_its_fleet_rows(tmp_path: Path):
    """Found by the fleet fuzz target: an idstr's non-UTF-8 byte is kept as a surrogate
    (lossless), which Arrow could not store: the file's row was a UnicodeEncodeError."""
    from miglab.fleet.rows import FileStat, file_rows

    name = b"d\xfc"
    head = b"\x04" + struct.pack(">I", 50) + bytes([len(name)]) + name + struct.pack(">II", 0, 1)
    path = tmp_path / "odd.mig"
    path.write_bytes(PRE + head + b"\x05" + b"\x7e" + struct.pack(">I", 50) + b"\x00")
    assert miglab.load(path).records[-1].name == "d\udcfc"
    rows = file_rows(FileStat.of(path))
    assert rows.stream["error"] == ""
    assert rows.tables["sections"].column("name").to_pylist()[-1] == "d\\xfc"
