"""``miglab.cli``: each command imports only what it uses, and prints what the heavy path printed.

Start-up is checked by the modules a fresh process holds after a command,
never by timing it (benchmarks/bench_cli.py prints the times).  The text of
``inspect`` and ``dump`` is compared with what pandas and the standard
library's ``json`` make of the same stream, the output the commands used
to produce through them.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import miglab
from miglab.analysis.frames import SECTION_COLUMNS, sections_frame
from miglab.cli import inspect as inspect_cmd
from miglab.cli import main
from miglab.stream.jsonview import dumps, stream_to_jsonable
from tests.helpers import DATA, ROOT

NET = DATA / "q72-pc-i440fx-7.2-net.mig"  # the most device-heavy 7.2 stream in data/
HEAVY = ("pandas", "asn1tools", "matplotlib", "numpy")

_PROBE = """
import contextlib, io, json, sys
from miglab.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        status = main(sys.argv[1:])
    except SystemExit as exc:  # --version and --help exit from argparse
        status = exc.code
print(json.dumps({"status": status, "modules": sorted(sys.modules), "out": out.getvalue()}))
"""


def run_fresh(*argv: str, site: bool = True) -> dict:
    """Run ``miglab ARGV`` in a new interpreter; its status, stdout and loaded modules.

    ``site=False`` runs it without site-packages (``-S``), whose ``.pth`` files
    (an editable install's import finder) may import modules before miglab starts.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, *(() if site else ("-S",)), "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    return json.loads(done.stdout)


def heavy(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} & set(HEAVY)


def test_version_loads_no_stream_machinery_nor_argparse() -> None:
    got = run_fresh("--version")
    assert got["status"] == 0
    assert got["out"].strip() == f"miglab {miglab.__version__}"
    assert heavy(got["modules"]) == set()
    assert not [m for m in got["modules"] if m.startswith(("miglab.stream", "miglab.vmstate"))]
    assert "argparse" not in got["modules"]  # the version is printed before any parser is built
    assert "typing" not in got["modules"]


def test_version_constant_is_pyproject_version() -> None:
    """``miglab.__version__`` is a constant (importlib.metadata costs start-up): kept equal here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert miglab.__version__ == project["version"]


@pytest.mark.parametrize("command", ["inspect", "dump"])
def test_reading_commands_import_no_pandas_numpy_asn1tools_matplotlib(command: str) -> None:
    got = run_fresh(command, str(NET))
    assert got["status"] == 0
    assert "0000:00:04.0/virtio-net" in got["out"]
    assert heavy(got["modules"]) == set()


def test_main_called_with_argv_leaves_the_collector_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only the process's own command line (``main()``) freezes its imports out of the
    cyclic collector; a caller's ``main(argv)`` finds the collector as it left it."""
    import gc

    frozen = gc.get_freeze_count()
    assert main(["inspect", str(NET)]) == 0
    assert "0000:00:04.0/virtio-net" in capsys.readouterr().out
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_reading_a_stream_imports_no_pathlib() -> None:
    """pathlib (and the fnmatch, urllib.parse, ipaddress it imports) would cost every command
    a few ms; miglab's reader needs none of it, nor any third-party package."""
    got = run_fresh("inspect", str(NET), site=False)
    assert got["status"] == 0
    assert "0000:00:04.0/virtio-net" in got["out"]
    assert "pathlib" not in got["modules"]


@pytest.mark.parametrize("command", ["inspect", "dump"])
def test_reading_a_stream_imports_no_typing(command: str) -> None:
    """typing (with its NamedTuple and Protocol classes) cost ~13 M instructions, 3-5% of
    these commands: the reader, the walk and the visitors name types for the checker only."""
    got = run_fresh(command, str(NET), site=False)
    assert got["status"] == 0
    assert "0000:00:04.0/virtio-net" in got["out"]
    assert "typing" not in got["modules"]


def test_diff_imports_no_pandas_numpy_asn1tools_matplotlib() -> None:
    got = run_fresh("diff", str(NET), str(NET))
    assert got["status"] == 0
    assert got["out"].endswith(" identical\n")
    assert heavy(got["modules"]) == set()


@pytest.mark.parametrize("command", ["verify", "extract"])
def test_other_commands_import_no_pandas_asn1tools_matplotlib(command: str, tmp_path: Path) -> None:
    argv = [command, str(NET)] + (
        ["-o", str(tmp_path / "x"), "--no-progress"] * (command == "extract")
    )
    got = run_fresh(*argv)
    assert got["status"] == 0
    assert heavy(got["modules"]) <= {"numpy"}


def test_convert_to_legacy_does_not_compile_asn1(tmp_path: Path) -> None:
    got = run_fresh("convert", str(NET), "-o", str(tmp_path / "out.mig"), "--to", "legacy")
    assert got["status"] == 0
    assert (tmp_path / "out.mig").read_bytes() == NET.read_bytes()
    assert heavy(got["modules"]) <= {"numpy"}


def test_compat_help_lists_the_versions_from_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    from miglab.compat.qemu import QEMU_VERSIONS

    with pytest.raises(SystemExit):
        main(["compat", "--help"])
    assert f"destination QEMU version ({', '.join(QEMU_VERSIONS)})" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["compat", str(NET), "-o", "x", "--to-qemu", "9.9", "--machine", "m"])
    choose = ", ".join(map(repr, QEMU_VERSIONS))
    assert f"invalid choice: '9.9' (choose from {choose})" in capsys.readouterr().err


@pytest.mark.parametrize(
    "path",
    [NET, DATA / "q72-pc-i440fx-2.2-default.mig", DATA / "q100-pc-q35-10.0-default.mig"],
    ids=lambda p: p.stem,
)
def test_inspect_prints_the_sections_frame(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_cmd.COLUMNS == SECTION_COLUMNS
    stream = miglab.load(path)
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    expected = f"container: bare\nmachine: {stream.machine or '(no configuration block)'}\n"
    frame = sections_frame(stream).to_string(index=False) + "\n"
    assert text.startswith(expected + frame)
    notes = text[len(expected + frame) :]
    undecoded = sections_frame(stream).query("not decoded")
    if undecoded.empty:
        assert notes == ""
    else:  # the pre-2.x machine type writes no vmdesc: every section, and the --schema hint
        lines = notes.splitlines()
        assert lines[0] == f"{len(undecoded)} section(s) not decoded:"
        assert lines[1] == f"  offset {undecoded.offset.iloc[0]}: no description for full " + (
            f"section {undecoded.name.iloc[0]!r}"
        )
        assert lines[-1].startswith("hint: the stream has no vmdesc trailer; give --schema DUMP")


def test_dump_text_is_json_dumps_indent_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dump", str(NET)]) == 0
    view = stream_to_jsonable(miglab.load(NET), text=True)
    assert capsys.readouterr().out == json.dumps(view, indent=1) + "\n"


def test_dump_shows_strings_as_text_and_hex_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    def runstate(*extra: str) -> str:
        assert main(["dump", str(NET), *extra]) == 0
        records = json.loads(capsys.readouterr().out)["records"]
        (glob,) = [r for r in records if r["name"] == "globalstate"]
        return glob["state"]["runstate"]

    # QEMU saves the run state as a 100-byte NUL-padded C string (migration/global_state.c).
    assert runstate() == "prelaunch"
    assert runstate("--hex") == b"prelaunch".hex() + "00" * (100 - len("prelaunch"))


def test_a_closed_pipe_ends_dump_quietly_with_status_0() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "miglab", "dump", str(NET)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(2) == b"{\n"
        proc.stdout.close()  # as `| head -1` does; the dump is ~1 MB, far beyond a pipe buffer
        err = proc.stderr.read()
    assert (proc.returncode, err) == (0, b"")


def test_verify_exits_2_on_what_is_no_stream_and_1_on_a_cut_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert main(["verify", str(text)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"miglab: error: {text}: at offset 0 (0x0): not a migration stream: ")
    assert "file magic is 0x68656c6c" in err
    cut = tmp_path / "cut.mig"
    cut.write_bytes(NET.read_bytes()[:100_000])
    assert main(["verify", str(cut)]) == 1
    assert "1 error(s)" in capsys.readouterr().out


def test_an_unreadable_file_is_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.mig"
    assert main(["inspect", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"miglab: error: {missing}: cannot read: No such file or directory\n"


def test_check_schemas_keeps_the_devices_of_a_stream_errors_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, new = DATA / "schema-7.2-pc-q35-7.2.json", DATA / "schema-10.0-pc-q35-10.0.json"
    assert main(["check-schemas", str(old), str(new)]) == 1
    every = capsys.readouterr().out.splitlines()[:-1]
    assert any(" serial-mm: " in line for line in every)  # a class no pc-q35 guest has
    severities = [line.split()[0] for line in every]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    stream = DATA / "q72-pc-q35-7.2-net.mig"
    # Backward, 7.2 -> 10.0, breaks only on devices this guest lacks; forward breaks on
    # i8259's 'ltim' subsection, which 7.2 does not know.
    assert main(["check-schemas", str(old), str(new), "--devices-of", str(stream)]) == 0
    kept = capsys.readouterr().out.splitlines()
    assert {line.split()[2].split(".")[0].rstrip(":") for line in kept[:-1]} == {
        "e1000e",
        "vmschkmachine",
    }
    assert kept[-1].startswith(f"BACKWARD for the devices of {stream}: ok, 0 error(s); ")
    argv = ["check-schemas", str(old), str(new), "--devices-of", str(stream), "--direction", "full"]
    assert main(argv) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error")]
    assert errors and all("i8259/ltim" in line for line in errors)


def test_check_schemas_for_a_machine_type_from_the_schemas_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    new, old = DATA / "schema-10.0-pc-q35-10.0.json", DATA / "schema-7.2-pc-q35-7.2.json"
    argv = ["check-schemas", str(new), str(old), "--all"]
    assert main(argv) == 1
    every = capsys.readouterr().out.splitlines()
    assert any(" xen-platform: " in line for line in every)  # refused outside a Xen guest
    assert main([*argv, "--machine", "pc-q35-7.2"]) == 1  # a q35 with ufs still breaks
    out = capsys.readouterr().out.splitlines()
    *lines, summary = out
    devices = {line.split()[2].split(".")[0].rstrip(":") for line in lines}
    assert {"ufs", "e1000e", "isa-i8259", "kvm-i8259"} <= devices  # pluggable and board
    assert not devices & {"xen-platform", "acpi-ged", "emmc", "sysbus-esp", "PIIX3-xen"}
    severities = [line.split()[0] for line in lines]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert summary.startswith("BACKWARD for machine type pc-q35-7.2: broken, ")
    assert "device class(es) pc-q35-7.2 cannot have (" in summary
    assert main([*argv, "--machine", "microvm"]) == 2
    assert "no device list for machine type 'microvm'" in capsys.readouterr().err


def test_progress_shows_on_a_terminal_or_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from miglab.cli import _progress

    parser = argparse.ArgumentParser()
    _progress.add_progress_arguments(parser)
    for tty, argv, shown in (
        (False, [], False),
        (True, [], True),
        (False, ["--progress"], True),
        (True, ["--no-progress"], False),
    ):
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
        assert _progress.progress_enabled(parser.parse_args(argv)) is shown, (tty, argv)
    with pytest.raises(SystemExit):
        parser.parse_args(["--progress", "--no-progress"])


# Every command that reads a stream in proportion to its size, with the phases it reports.
_LONG = {
    "inspect": ["reading"],
    "dump": ["reading"],
    "verify": ["reading", "checking"],
    "convert": ["reading", "writing"],
    "compat": ["reading", "writing"],
    "extract": ["reading", "writing"],
    "diff A": ["reading"],
    "export-elf": ["reading", "writing"],
}


def _long_argv(what: str, out: Path) -> list[str]:
    command = what.split()[0]
    tail = {
        "convert": ["-o", str(out), "--to", "legacy"],
        "compat": ["-o", str(out), "--to-qemu", "10.0", "--machine", "pc-i440fx-10.0"],
        "extract": ["-o", str(out)],
        "diff": [str(NET)],
        "export-elf": ["-o", str(out)],
    }.get(command, [])
    return [command, str(NET), *tail] + ["--allow-guest-visible"] * (command == "compat")


@pytest.mark.parametrize("what", list(_LONG))
def test_long_commands_report_progress_only_when_asked_and_print_the_same(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _long_argv(what, tmp_path / "out")
    runs = {}
    # No flag is silent too where stderr is no terminal (here), the rule for every command.
    for flag in ([], ["--progress"], ["--no-progress"])[what not in ("inspect", "verify") :]:
        status = main([*argv, *flag])
        runs[tuple(flag)] = (status, *capsys.readouterr())
    shown, silenced = runs[("--progress",)], runs[("--no-progress",)]
    quiet = runs.get((), silenced)
    assert quiet[0] in (0, 1) and shown[:2] == silenced[:2] == quiet[:2]  # status, stdout
    assert quiet[2] == silenced[2] == ""
    lines = shown[2].splitlines()
    size = NET.stat().st_size
    for phase in _LONG[what]:  # each phase ends at the whole stream, in its own lines
        mine = [line for line in lines if line.startswith(f"{what}: {phase} ")]
        assert mine and f" {size / 1e3:.0f} kB of {size / 1e3:.0f} kB (100%)" in mine[-1]
    assert [line.split(":")[0] for line in lines] == [what] * len(lines) or what == "diff A"


def test_a_compressed_stream_reports_its_decompression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = tmp_path / "net.mig.gz"
    with packed.open("wb") as out:
        subprocess.run(["gzip", "-c", str(NET)], stdout=out, check=True)
    assert main(["inspect", str(packed), "--progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    size = packed.stat().st_size
    mine = [line for line in lines if line.startswith("inspect: decompressing ")]
    assert mine and f" {size / 1e3:.0f} kB of {size / 1e3:.0f} kB (100%)" in mine[-1]
    assert any(line.startswith("inspect: reading ") for line in lines)


def test_a_byte_line_redraws_at_most_four_times_a_second_and_not_for_a_quick_phase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from miglab.cli import _progress

    now = [100.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    tty = argparse.Namespace(progress=None)
    with _progress.byte_progress(tty, "verify") as report:
        assert report is not None
        for i in range(40):  # 0.4 s: under the delay, nothing drawn
            report("reading", i, 40)
            now[0] += 0.01
        report("reading", 40, 40)
    assert sys.stderr.getvalue() == ""
    with _progress.byte_progress(tty, "verify") as report:
        assert report is not None
        for i in range(3001):  # 3 s of reports every millisecond
            report("checking", i * 1000, 3_000_000)
            now[0] += 0.001
    draws = sys.stderr.getvalue().split("\r")[1:]
    assert 3 <= len(draws) <= 4 * 3 and draws[-1].endswith("\n")
    assert draws[-1].startswith("verify: checking 3.0 MB of 3.0 MB (100%), 1.0 MB/s [0:03]")


@pytest.mark.qemu
def test_survives_reports_its_steps_only_when_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from miglab.qemu import GuestNotFound, QemuNotFound
    from miglab.qemu.capture_cache import cached_capture
    from miglab.qemu.capturing import sidecar_path

    try:
        cached = cached_capture("7.2", "pc-q35-7.2", "virtio")
    except (GuestNotFound, QemuNotFound) as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))
    # A copy whose sidecar names this checkout's guest (the cached one may name another's).
    captured = dataclasses.replace(cached, stream=tmp_path / "live.mig")
    shutil.copyfile(cached.stream, captured.stream)
    sidecar_path(captured.stream).write_text(json.dumps(captured.to_json()))
    assert main(["survives", str(captured.stream), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "survives: starting QEMU 7.2" in err
    assert "survives: loading the stream: " in err
    beats = re.findall(r"survives: watching the guest after cont: heartbeat (\d+)", err)
    assert beats and int(beats[-1]) > captured.last_counter
    # Quiet where stderr is no terminal (here): refused at once on another device set.
    argv = ["survives", str(captured.stream), "--devices", "legacy"]
    assert main(argv) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, True, None, 1.5, "x", [], {}, {"k": [2, 3]}, (1, 2)]},
        {"b": {1: 2}, "c": "\u00e9\ud800", "d": [[1, 2], ["a", "\n"]], "e": float("nan")},
        [[], {}, 0, -(2**70), "", [None]],
        # int lists take orjson's path: the 64-bit edges, beyond them, bools and floats
        {"i": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1], "j": [1, 2**64], "k": [[3, True]]},
        {"f": [1, 1.5], "g": [7, "8,9"], "h": [[1, [2, 3]], [4, None]], "e": [5] * 1000},
    ],
)
def test_dumps_equals_the_standard_library(value: object) -> None:
    assert dumps(value) == json.dumps(value, indent=1)
