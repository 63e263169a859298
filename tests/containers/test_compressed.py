"""miglab.containers.compressed: real streams compressed by the real programs."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

import miglab
from miglab.containers import container_name, detect
from miglab.errors import LimitExceeded, MigrationFormatError
from tests.helpers import DATA

STREAM = DATA / "q72-pc-q35-7.2-net.mig"
CODECS = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst", "lzop": ".lzo"}


def _compress(tmp_path: Path, codec: str, data: bytes) -> Path:
    if shutil.which(codec) is None:
        pytest.skip(f"{codec} is not installed")
    out = tmp_path / f"s{CODECS[codec]}"
    out.write_bytes(
        subprocess.run([codec, "-c"], input=data, capture_output=True, check=True).stdout
    )
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_reads_and_writes_back_byte_exact(tmp_path: Path, codec: str) -> None:
    packed = _compress(tmp_path, codec, STREAM.read_bytes())
    stream = miglab.load(packed)
    assert detect(packed) == codec and container_name(stream) == codec
    assert stream.to_bytes() == STREAM.read_bytes()
    copy = miglab.save(stream, tmp_path / "copy")
    assert copy.read_bytes() == packed.read_bytes()


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_edited_stream_is_compressed_anew(tmp_path: Path, codec: str) -> None:
    stream = miglab.load(_compress(tmp_path, codec, STREAM.read_bytes()))
    stream.trailer = b"edited"
    out = miglab.save(stream, tmp_path / "edited")
    with out.open("rb") as f:
        plain = subprocess.run([codec, "-dc"], stdin=f, capture_output=True, check=True)
    assert plain.stdout == STREAM.read_bytes() + b"edited"


@pytest.mark.parametrize("cut", [10, 100, 5000])
def test_truncated_gzip_is_one_format_error(tmp_path: Path, cut: int) -> None:
    packed = _compress(tmp_path, "gzip", STREAM.read_bytes()).read_bytes()
    with pytest.raises(MigrationFormatError) as err:
        miglab.load(packed[:cut])
    assert err.value.offset is not None


def test_corrupt_xz_is_a_format_error(tmp_path: Path) -> None:
    packed = bytearray(_compress(tmp_path, "xz", STREAM.read_bytes()).read_bytes())
    packed[200:210] = b"\xff" * 10
    with pytest.raises(MigrationFormatError, match="xz data is not valid"):
        miglab.load(bytes(packed))


def test_expansion_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _compress(tmp_path, "gzip", bytes(200 << 20))  # 200 MiB of zeros: ~200 KiB packed
    monkeypatch.setattr(miglab.LIMITS, "max_expansion_ratio", 16)
    with pytest.raises(LimitExceeded, match="expands past"):
        miglab.load(bomb)


def test_compressed_garbage_reports_the_inner_stream(tmp_path: Path) -> None:
    packed = _compress(tmp_path, "gzip", b"QEVM\x00\x00\x00\x03\x99")
    with pytest.raises(MigrationFormatError, match="gzip-decompressed stream"):
        miglab.load(packed)


def test_save_leaves_the_target_alone_on_failure(tmp_path: Path) -> None:
    stream = miglab.load(STREAM)
    target = tmp_path / "keep.mig"
    target.write_bytes(b"precious")
    stream.records.append(dataclasses.replace(stream.sections[-1], payload=object()))  # type: ignore[arg-type]
    with pytest.raises(MigrationFormatError, match="unknown type"):
        miglab.save(stream, target)
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mig"]
