"""``miglab convert`` and ``miglab bench`` on real streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miglab import encoders
from miglab.cli import main
from tests.helpers import STREAMS

_SRC = next(p for p in STREAMS if p.stem == "q100-pc-q35-10.0-usb")


def test_convert_chain_back_to_legacy(tmp_path: Path) -> None:
    """legacy -> every format -> (detected) next format ... -> legacy is the input."""
    current = _SRC
    for fmt in [*encoders.names()[1:], "legacy"]:
        out = tmp_path / f"s.{fmt}"
        assert main(["convert", str(current), "-o", str(out), "--to", fmt]) == 0
        assert encoders.detect(out.read_bytes()) == fmt
        current = out
    assert current.read_bytes() == _SRC.read_bytes()


def test_convert_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00garbage")
    assert main(["convert", str(bad), "-o", str(tmp_path / "o"), "--to", "json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("miglab: error: ") and "cannot tell the format" in err
    assert err.count("\n") == 1


def test_bench_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    chart = tmp_path / "c.png"
    argv = [
        "bench",
        "--json",
        "--repeat",
        "1",
        "--formats",
        "legacy,msgpack",
        "--chart",
        str(chart),
        str(_SRC),
    ]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["part"], r["format"]) for r in rows} == {
        (p, f) for p in ("device", "stream") for f in ("legacy", "msgpack")
    }
    legacy = next(r for r in rows if r["part"] == "stream" and r["format"] == "legacy")
    assert legacy["bytes"] == _SRC.stat().st_size
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
