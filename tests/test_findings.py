"""``miglab.findings``: verify and check-schemas report in one record, printed in one JSON shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from miglab.cli import main
from miglab.compat.schema_check import check_schemas
from miglab.findings import ERROR, Finding
from miglab.stream.verify import verify
from tests.helpers import DATA

STREAM = DATA / "q72-pc-q35-7.2-default.mig"
SCHEMA = json.loads((DATA / "schema-7.2-pc-q35-7.2.json").read_text())
# Every key, in this order, whichever check made the finding.
KEYS = ["severity", "code", "message", "offset", "device", "path"]


def _trailing_stream(tmp_path: Path) -> tuple[Path, int]:
    """The real stream with one byte after its vmdesc, and where that byte is."""
    data = STREAM.read_bytes()
    path = tmp_path / "trailing.mig"
    path.write_bytes(data + b"x")
    return path, len(data)


def _hpet_schemas(tmp_path: Path) -> tuple[Path, Path]:
    """The real 7.2 hpet entry, and a copy whose DST reads one field SRC does not write."""
    src: dict[str, Any] = {"vmschkmachine": SCHEMA["vmschkmachine"], "hpet": SCHEMA["hpet"]}
    dst = copy.deepcopy(src)
    extra = {"field": "extra", "version_id": 0, "field_exists": False, "size": 4}
    dst["hpet"]["Description"]["Fields"].append(extra)
    paths = tmp_path / "src.json", tmp_path / "dst.json"
    for path, schema in zip(paths, (src, dst), strict=True):
        path.write_text(json.dumps(schema))
    return paths


def test_verify_and_check_schemas_make_the_same_record(tmp_path: Path) -> None:
    stream, end = _trailing_stream(tmp_path)
    src, dst = _hpet_schemas(tmp_path)
    (trailing,) = verify(stream)
    (added,) = check_schemas(src, dst)
    assert type(trailing) is Finding and type(added) is Finding
    # A stream's finding says where in bytes, a schema's which device and member.
    assert (trailing.severity, trailing.code, trailing.offset) == (ERROR, "trailing-bytes", end)
    assert (trailing.device, trailing.path) == (None, None)
    assert (added.severity, added.code, added.offset) == (ERROR, "field-added", None)
    assert (added.device, added.path) == ("hpet", "extra")
    assert str(trailing) == (
        f"error: trailing-bytes: offset {end} (0x{end:x}): "
        "1 bytes after the end of the stream and its vmdesc"
    )
    assert str(added).startswith("error: field-added: hpet.extra: DST reads it from version 0")


def test_both_commands_print_one_json_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream, end = _trailing_stream(tmp_path)
    src, dst = _hpet_schemas(tmp_path)
    capsys.readouterr()
    assert main(["verify", str(stream), "--json"]) == 1
    (from_verify,) = json.loads(capsys.readouterr().out)["findings"]
    assert main(["check-schemas", str(src), str(dst), "--json"]) == 1
    (from_check,) = json.loads(capsys.readouterr().out)
    assert list(from_verify) == KEYS and list(from_check) == KEYS
    assert from_verify == {
        "severity": "error",
        "code": "trailing-bytes",
        "message": "1 bytes after the end of the stream and its vmdesc",
        "offset": end,
        "device": None,
        "path": None,
    }
    assert {k: from_check[k] for k in ("severity", "code", "offset", "device", "path")} == {
        "severity": "error",
        "code": "field-added",
        "offset": None,
        "device": "hpet",
        "path": "extra",
    }
