"""miglab.files, the one safe writer, on every path that writes a user's file.

Each writer (``save``, ``convert`` to QEMU's stream and to JSON, ``compat``,
``export-elf``, ``extract``) runs on a real QEMU stream with its output name
planted first: a symlink and a hard link to a victim file, and the input
itself.  On success the victim and the input keep their bytes and the output
is a new regular file; on failure (the output budget set to nothing) the
victim, the input and the planted links are as they were and no temporary
file is left.  The qcow2 writer is checked the same way in
``tests/judge/containers/test_qcow2.py`` (it needs a savevm image).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import miglab
from miglab.cli import main
from miglab.errors import LimitExceeded
from miglab.limits import LIMITS
from miglab.stream.extract import extract
from tests.helpers import DATA

SOURCE = DATA / "q100-pc-q35-7.2-default.mig"  # made by QEMU 10.0; compat takes it to 7.2
VICTIM = b"the user's file, which no output may touch\n"


def _cli(*argv: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(list(argv))
    if "more output than" in err.getvalue():  # main printed the budget's LimitExceeded
        raise LimitExceeded(err.getvalue())
    assert status == 0, err.getvalue()


def _save(src: Path, out: Path) -> None:
    miglab.save(miglab.load(src), out)


def _convert_legacy(src: Path, out: Path) -> None:
    _cli("convert", str(src), "-o", str(out), "--to", "legacy")


def _convert_json(src: Path, out: Path) -> None:
    _cli("convert", str(src), "-o", str(out), "--to", "json")


def _compat(src: Path, out: Path) -> None:
    _cli("compat", str(src), "-o", str(out), "--to-qemu", "7.2", "--machine", "pc-q35-7.2")


def _export_elf(src: Path, out: Path) -> None:
    _cli("export-elf", str(src), "-o", str(out))


def _extract(src: Path, out: Path) -> None:
    extract(src, out.parent)


#: name -> (writer, the output's name in the work directory)
WRITERS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "save": (_save, "out.mig"),
    "convert-legacy": (_convert_legacy, "out.mig"),
    "convert-json": (_convert_json, "out.json"),
    "compat": (_compat, "out.mig"),
    "export-elf": (_export_elf, "out.core"),
    "extract": (_extract, "state.json"),
}


def _plant(work: Path, name: str, how: str) -> tuple[Path, Path]:
    """The input and the output name, with ``how`` planted as the output."""
    src = work / "in.mig"
    shutil.copyfile(SOURCE, src)
    victim = work / "victim"
    victim.write_bytes(VICTIM)
    out = work / name
    if how == "symlink":
        out.symlink_to(victim)
    elif how == "hardlink":
        os.link(victim, out)
    return src, out


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_planted_link_is_replaced_and_its_target_kept(tmp_path: Path, writer: str, how: str):
    run, name = WRITERS[writer]
    src, out = _plant(tmp_path, name, how)
    run(src, out)
    assert (tmp_path / "victim").read_bytes() == VICTIM
    assert src.read_bytes() == SOURCE.read_bytes()
    assert not out.is_symlink() and out.stat().st_nlink == 1 and out.stat().st_size > 0
    assert not [p.name for p in tmp_path.rglob(".*.tmp")]


@pytest.mark.parametrize("writer", ["save", "convert-legacy"])
def test_an_output_over_its_own_input_is_written_whole(tmp_path: Path, writer: str):
    src = tmp_path / "in.mig"
    shutil.copyfile(SOURCE, src)
    WRITERS[writer][0](src, src)  # an unedited stream is written back byte for byte
    assert src.read_bytes() == SOURCE.read_bytes()


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failed_write_leaves_every_file_as_it_was(
    tmp_path: Path, writer: str, monkeypatch: pytest.MonkeyPatch
):
    run, name = WRITERS[writer]
    src, out = _plant(tmp_path, name, "symlink")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    monkeypatch.setattr(LIMITS, "output_slack", 0)
    monkeypatch.setattr(LIMITS, "output_bytes_per_input_byte", 0)
    with pytest.raises(LimitExceeded):
        run(src, out)
    assert (tmp_path / "victim").read_bytes() == VICTIM
    assert out.is_symlink() and out.readlink() == tmp_path / "victim"
    assert src.read_bytes() == SOURCE.read_bytes()
    made = ["ram"] if writer == "extract" else []  # extract's directory, none of its files
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(before + made)


def _compressed(work: Path, kind: str) -> Path:
    """``SOURCE`` in a compressed container of ``kind`` (gzip file or libvirt gzip image)."""
    import gzip

    from miglab.containers import libvirt

    path = work / f"in.{kind}"
    if kind == "gzip":
        path.write_bytes(gzip.compress(SOURCE.read_bytes(), mtime=0))
    else:
        header = libvirt.LibvirtSave(
            magic=b"LibvirtQemudSave", version=2, data_len=0, was_running=0,
            format=libvirt.SaveFormat.GZIP, xml="<domain type='kvm'><name>t</name></domain>\n",
        )  # fmt: skip
        miglab.save(miglab.load(SOURCE), path, container=header)
    return path


def _edited(src: Path) -> miglab.Stream:
    """``src`` loaded with one field changed, so that it is compressed anew when written."""
    stream = miglab.load(src)
    stream.device("mc146818rtc").payload.fields["offset"] = 1
    return stream


@pytest.mark.parametrize("kind", ["gzip", "libvirt-gzip"])
def test_compressed_output_goes_through_the_safe_writer(tmp_path: Path, kind: str):
    src = _compressed(tmp_path, kind)
    stream = _edited(src)
    _, out = _plant(tmp_path, "out.gz", "symlink")
    miglab.save(stream, out)
    assert (tmp_path / "victim").read_bytes() == VICTIM
    assert not out.is_symlink() and out.stat().st_nlink == 1
    again = miglab.load(out)
    assert type(again.container) is type(stream.container)
    assert again.device("mc146818rtc").payload.fields["offset"] == 1


@pytest.mark.parametrize("kind", ["gzip", "libvirt-gzip"])
@pytest.mark.parametrize("room", ["plain", "compressed"])
def test_compressed_output_is_budgeted(
    tmp_path: Path, kind: str, room: str, monkeypatch: pytest.MonkeyPatch
):
    """Both steps spend the output's budget: the plain stream staged for the compressor,
    then the compressor's output (which the program wrote to the file itself before)."""
    src = _compressed(tmp_path, kind)
    stream = _edited(src)
    plain = len(stream.to_bytes())
    head = stream.container.stream_offset if kind != "gzip" else 0  # libvirt's header
    # "plain": not even the staged stream fits; "compressed": it fits, its compression does not
    monkeypatch.setattr(LIMITS, "output_slack", head + plain + (16 if room == "compressed" else -1))
    monkeypatch.setattr(LIMITS, "output_bytes_per_input_byte", 0)
    _, out = _plant(tmp_path, "out.gz", "symlink")
    with pytest.raises(LimitExceeded, match="more output than") as info:
        miglab.save(stream, out)
    assert info.value.path == str(out)
    assert out.is_symlink() and (tmp_path / "victim").read_bytes() == VICTIM
    assert not [p.name for p in tmp_path.rglob(".*.tmp")]


def test_a_capture_sidecar_is_not_written_through_a_link(tmp_path: Path):
    from miglab.qemu.capturing import Capture, sidecar_path
    from miglab.qemu.guest import default_guest, device_set

    record = Capture(
        tmp_path / "cap.mig", "7.2", "pc-q35-7.2", device_set("legacy"), default_guest(),
        "live", last_counter=7, taint=0, ram_passes=3,
    )  # fmt: skip
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    sidecar_path(record.stream).symlink_to(victim)
    assert record.save() == tmp_path / "cap.mig.json"
    assert victim.read_bytes() == VICTIM
    assert not (tmp_path / "cap.mig.json").is_symlink()
    assert Capture.load(record.stream).last_counter == 7
