"""miglab.fleet: the index into Parquet, the dataset layout, queries, the per-stream check."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import miglab
import miglab.fleet
from miglab.cli import main
from miglab.errors import MiglabError
from miglab.fleet.indexing import index
from miglab.fleet.synthetic import CORRUPTIONS, make_fleet
from miglab.stream.synthetic import write_synthetic
from tests.helpers import DATA, MANIFEST, ROOT

# dask's Parquet reader calls reset_index(inplace=True), deprecated in pandas 3.1.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")

REAL = sorted(DATA / s["file"] for s in MANIFEST["streams"])


@pytest.fixture(scope="module")
def real_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every real stream of data/ plus three bad files, indexed once (synchronously)."""
    root = tmp_path_factory.mktemp("real")
    streams = root / "streams"
    streams.mkdir()
    for p in REAL:
        os.symlink(p, streams / p.name)
    shutil.copy(DATA / "manifest.json", streams / "manifest.json")
    net = (DATA / "q72-pc-q35-7.2-net.mig").read_bytes()
    (streams / "cut.mig").write_bytes(net[: len(net) // 2])
    (streams / "empty.mig").write_bytes(b"")
    (streams / "notes.txt").write_text("not a stream\n")
    write_synthetic(streams / "odd-machine.mig", ram_bytes=1 << 16, machine="../../x y")
    index([streams], root / "dataset", scheduler="synchronous")
    return root


def _table(dataset: Path, name: str) -> dict[str, list]:
    return pads.dataset(dataset / name, partitioning="hive").to_table().to_pydict()


def test_streams_table_has_one_row_per_file_with_manifest_release(real_fleet: Path) -> None:
    streams = _table(real_fleet / "dataset", "streams")
    by_name = {Path(f).name: i for i, f in enumerate(streams["file"])}
    assert len(streams["file"]) == len(REAL) + 4
    for s in MANIFEST["streams"]:
        i = by_name[s["file"]]
        assert streams["error"][i] == ""
        assert streams["release"][i] == s["qemu"]
        assert streams["machine"][i] == s["machine"]  # from the manifest for pc-2.2
        assert streams["size"][i] == s["size"]
        assert streams["vmdesc"][i] is s["vmdesc"]
        assert streams["container"][i] == "bare"
        assert streams["passes"][i] == 1
        assert streams["ram_bytes"][i] > 16 << 20


def test_bad_files_are_rows_with_their_error(real_fleet: Path) -> None:
    streams = _table(real_fleet / "dataset", "streams")
    row = {Path(f).name: i for i, f in enumerate(streams["file"])}
    cut = row["cut.mig"]
    assert streams["error_kind"][cut] == "TruncatedStreamError"
    assert "offset" in streams["error"][cut]
    assert streams["error_kind"][row["empty.mig"]] == "TruncatedStreamError"
    assert streams["error_kind"][row["notes.txt"]] == "MigrationFormatError"
    assert "file magic" in streams["error"][row["notes.txt"]]
    odd = row["odd-machine.mig"]  # a machine name that is no folder name: unknown partition
    assert (streams["error"][odd], streams["machine"][odd]) == ("", "unknown")
    bad = {streams["file"][i] for i in (cut, row["empty.mig"], row["notes.txt"])}
    for name in ("sections", "fields", "ram"):
        assert not bad & set(_table(real_fleet / "dataset", name)["file"])


def test_tables_hold_what_each_stream_holds(real_fleet: Path) -> None:
    path = DATA / "q100-pc-q35-10.0-storage.mig"
    stream = miglab.load(path)
    fleet = miglab.fleet.open(real_fleet / "dataset")
    me = str(real_fleet / "streams" / path.name)
    fields = fleet.fields[fleet.fields["file"] == me].compute()
    expected = miglab.fields_frame(stream)
    assert len(fields) == len(expected)
    assert set(fields["release"]) == {"10.0"} and set(fields["machine"]) == {"pc-q35-10.0"}
    # typed values as exact text, numbers as floats, offsets into the file
    ticks = fields[(fields["section"] == "timer") & (fields["path"] == "cpu_ticks_offset")]
    raw = stream.device("timer").payload.fields["cpu_ticks_offset"]
    assert ticks["value"].iloc[0] == str(raw) and ticks["number"].iloc[0] == float(raw)
    data = path.read_bytes()
    at = int(ticks["offset"].iloc[0])
    assert int.from_bytes(data[at : at + 8], "big", signed=True) == raw
    sections = fleet.sections[fleet.sections["file"] == me].compute()
    assert len(sections) == len(stream.records)
    assert "scsi-disk" in set(sections["device"])  # 0000:00:02.0/0:0:0/scsi-disk
    ram = fleet.ram[fleet.ram["file"] == me].compute()
    assert list(ram["block"]) == [b.name for b in stream.ram.blocks]
    assert int(ram["pages"].sum()) == int(miglab.ram_frame(stream)["pages"].sum())


def test_partitions_are_hive_folders_plain_pyarrow_reads(real_fleet: Path) -> None:
    dataset = real_fleet / "dataset"
    for name in ("streams", "sections", "fields", "ram", "layouts"):
        folders = {
            p.parent.relative_to(dataset / name) for p in (dataset / name).rglob("*.parquet")
        }
        assert Path("release=7.2/machine=pc-q35-7.2") in folders, name
    table = pq.read_table(dataset / "streams")  # no miglab, no schema given
    assert "machine" in table.column_names and "release" in table.column_names
    one = next((dataset / "fields" / "release=10.0" / "machine=pc-q35-10.0").glob("*.parquet"))
    assert "machine" not in pq.read_schema(one).names  # in the folder name only


def test_rerun_skips_unchanged_and_replaces_a_changed_file(tmp_path: Path) -> None:
    streams = tmp_path / "s"
    streams.mkdir()
    picks = REAL[:3]
    for p in picks:
        shutil.copy(p, streams / p.name)
    out = tmp_path / "d"
    first = index([streams], out, scheduler="synchronous")
    assert (first.indexed, first.skipped) == (3, 0)
    again = index([streams], out, scheduler="synchronous")
    assert (again.indexed, again.skipped, again.removed) == (0, 3, 0)
    changed = streams / picks[0].name
    changed.write_bytes(changed.read_bytes()[:1000])  # now truncated
    third = index([streams], out, scheduler="synchronous")
    assert third.indexed >= 1 and third.removed >= 1
    streams_t = _table(out, "streams")
    assert sorted(streams_t["file"]) == sorted(str(streams / p.name) for p in picks)
    row = streams_t["file"].index(str(changed))
    assert streams_t["error_kind"][row] == "TruncatedStreamError"
    assert str(changed) not in set(_table(out, "fields")["file"])
    gone = streams / picks[1].name
    gone.unlink()
    fourth = index([streams], out, scheduler="synchronous")
    assert fourth.removed >= 1
    left = _table(out, "streams")["file"]
    assert str(gone) not in left and len(left) == len(set(left)) == 2
    assert str(gone) not in set(_table(out, "sections")["file"])


def test_local_cluster_writes_the_same_dataset(tmp_path: Path, real_fleet: Path) -> None:
    distributed = pytest.importorskip("distributed")
    streams = tmp_path / "s"
    streams.mkdir()
    picks = [DATA / "q72-pc-q35-7.2-net.mig", DATA / "q100-pc-i440fx-10.0-usb.mig"]
    for p in picks:
        os.symlink(p, streams / p.name)
    shutil.copy(DATA / "manifest.json", streams / "manifest.json")
    (streams / "junk.mig").write_bytes(b"QEVM\0\0\0\x03\x42")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        memory_limit="1GiB",
        dashboard_address=None,
    ) as cluster:
        report = index([streams], tmp_path / "d", scheduler=cluster.scheduler_address)
    assert (report.indexed, report.errors) == (3, 1)
    fleet = miglab.fleet.open(tmp_path / "d")
    got = fleet.fields.groupby("file").size().compute()
    for p in picks:
        assert got[str(streams / p.name)] == len(miglab.fields_frame(miglab.load(p)))


def test_check_agrees_with_what_real_qemu_accepted(real_fleet: Path) -> None:
    """data/compat-matrix.csv: real QEMU loading each stream, unchanged, per destination."""
    fleet = miglab.fleet.open(real_fleet / "dataset")
    verdicts = {}
    for release in ("7.2", "10.0"):
        table = miglab.fleet.check(fleet, release, schemas=DATA)
        for row in table.itertuples():
            verdicts[Path(row.file).name, release] = row.verdict
    with (DATA / "compat-matrix.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["mode"] == "raw"]
    checked = 0
    for r in rows:
        verdict = verdicts[r["file"], r["destination"].split()[1]]
        if verdict == "unknown":  # pc-i440fx-2.2: no vmdesc
            continue
        assert (verdict == "ok") == (r["accepted"] == "True"), (r["file"], r["destination"])
        checked += 1
    assert checked >= 80
    assert verdicts["cut.mig", "7.2"] == "unreadable"
    assert verdicts["odd-machine.mig", "7.2"] == "unknown"


def test_check_names_the_breaking_field(real_fleet: Path) -> None:
    # QEMU 10.0's e1000e on pc-q35-10.0 sends core.timadj, which 7.2's e1000e does not read.
    from miglab.compat.schema_check import load_schema
    from miglab.fleet.movable import layout_verdict

    stream = miglab.load(DATA / "q100-pc-q35-10.0-net.mig")
    verdict = layout_verdict(stream.vmdesc, load_schema(DATA / "schema-7.2-pc-q35-7.2.json"))
    assert verdict.verdict == "breaks"
    assert any(f.path == "core.timadj" and "e1000e" in f.device for f in verdict.errors)


def test_check_on_one_machine_and_unknown_machine(real_fleet: Path) -> None:
    fleet = miglab.fleet.open(real_fleet / "dataset")
    table = miglab.fleet.check(fleet, "7.2", "pc-q35-7.2", schemas=DATA)
    mine = table[table["machine"] == "pc-q35-7.2"]
    assert set(mine["verdict"]) == {"ok"} and len(mine) == 13
    assert set(table[table["machine"] == "pc-q35-10.0"]["verdict"]) == {"other-machine"}
    with pytest.raises(MiglabError, match="no machine type"):
        miglab.fleet.check(fleet, "7.2", "pc-q35-10.0", schemas=DATA)


def test_queries_on_the_real_fleet(real_fleet: Path) -> None:
    fleet = miglab.fleet.open(real_fleet / "dataset")
    presence = miglab.fleet.device_presence(fleet).set_index("device")
    readable = len(REAL)
    assert presence.loc["e1000", "streams"] == sum("-net" in p.name for p in REAL)
    assert presence.loc["timer", "streams"] == readable  # decoded or not (pc-2.2)
    sizes = miglab.fleet.size_by_device(fleet)
    assert sizes.loc["e1000", "max"] >= 64 << 10  # tx.data alone is 64 KiB
    varying = miglab.fleet.varying_fields(fleet)
    keys = set(zip(varying["device"], varying["path"], strict=True))
    assert ("mc146818rtc", "last_update") in keys  # the guest clock differs per stream
    assert (varying["values"] > 1).all()


def test_synthetic_fleet_indexes_with_its_corruptions_as_errors(tmp_path: Path) -> None:
    rows = make_fleet(tmp_path / "s", 30, data_dir=DATA, seed=5, corrupt=0.2, ram_mib=(16, 64))
    bad = [r for r in rows if r["corrupt"]]
    assert {r["corrupt"] for r in bad} == set(CORRUPTIONS)
    report = index([tmp_path / "s"], tmp_path / "d", scheduler="threads", workers=2)
    assert (report.indexed, report.errors) == (30, len(bad))
    streams = miglab.fleet.open(tmp_path / "d").streams.compute().set_index("file")
    for r in rows:
        row = streams.loc[str(tmp_path / "s" / str(r["file"]))]
        assert row["release"] == r["qemu"]
        assert (row["error"] != "") == bool(r["corrupt"])
        if not r["corrupt"]:
            assert row["ram_bytes"] - (int(r["ram_mib"]) << 20) < 2 << 20  # plus ROMs


def test_cli_index_and_fleet_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    streams = tmp_path / "s"
    streams.mkdir()
    for name in ("q72-pc-q35-7.2-usb.mig", "q100-pc-q35-7.2-usb.mig", "q100-pc-q35-10.0-usb.mig"):
        os.symlink(DATA / name, streams / name)
    shutil.copy(DATA / "manifest.json", streams / "manifest.json")
    out = tmp_path / "d"
    args = ["index", str(streams), "-o", str(out), "--scheduler", "synchronous", "--no-progress"]
    assert main(args) == 0
    assert "3 indexed (0 unreadable)" in capsys.readouterr().out
    assert callable(miglab.fleet.index)  # not shadowed by the module the CLI imported
    check = ["fleet", "check", str(out), "--to-qemu", "7.2", "--machine", "pc-q35-7.2"]
    assert main([*check, "--schemas", str(DATA)]) == 0
    text = capsys.readouterr().out
    assert "3 streams -> QEMU 7.2 on pc-q35-7.2: 2 ok, 1 other-machine" in text
    assert main([*check, "--schemas", str(DATA), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["verdict"] for r in rows} == {"ok"}
    assert main(["fleet", "check", str(tmp_path), "--to-qemu", "7.2"]) == 2  # not a dataset


def test_fleet_package_is_import_light() -> None:
    import subprocess
    import sys

    code = "import miglab.fleet, miglab.cli.index, miglab.cli.fleet, sys; print(sorted(m for m in ('dask', 'pyarrow', 'distributed') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
