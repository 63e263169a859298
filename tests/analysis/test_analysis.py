"""Analysis tables and figures on the real streams and schemas in data/."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest

import miglab
from miglab.analysis import (
    DATA_DIR,
    compat_pivot,
    device_name,
    field_changes,
    machine_key,
    manifest_frame,
    plot_compat_matrix,
    plot_encoders,
    plot_section_sizes,
    plot_version_heatmap,
    schema_devices_frame,
    schema_frame,
    schema_version_matrix,
    stream_devices_frame,
    subsection_matrix,
    version_matrix,
)
from miglab.errors import DescriptionError
from tests.helpers import DATA, SCHEMAS

S72 = DATA / "schema-7.2-pc-q35-7.2.json"
S100 = DATA / "schema-10.0-pc-q35-10.0.json"
DEFAULTS = [
    "q72-pc-i440fx-2.2-default.mig",
    "q72-pc-i440fx-2.3-default.mig",
    "q72-pc-i440fx-2.4-default.mig",
    "q72-pc-i440fx-7.2-default.mig",
    "q100-pc-i440fx-2.4-default.mig",
    "q100-pc-i440fx-10.0-default.mig",
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_schema_frame_matches_the_json_leaf_by_leaf():
    raw = json.loads(S72.read_text())
    df = schema_frame(S72)
    e1000 = df[df.device == "e1000"]
    # The JSON's own top-level fields in order, nested ones flattened under their parent.
    fields = raw["e1000"]["Description"]["Fields"]
    expected = [
        name + "." + sub["field"] if "Description" in f else name
        for f in fields
        for name in [f["field"]]
        for sub in (f["Description"]["Fields"] if "Description" in f else [f])
    ]
    assert list(e1000[e1000.subsection == ""].path) == expected
    assert fields[0]["field"] == "parent_obj"
    irq = e1000[e1000.path == "parent_obj.irq_state"].iloc[0]
    raw_irq = fields[0]["Description"]["Fields"][-1]
    assert raw_irq["field"] == "irq_state"
    assert (irq["version_id"], irq["size"], irq["vmsd"]) == (2, raw_irq["size"], "PCIDevice")
    subs = {s["name"] for s in raw["e1000"]["Description"]["Subsections"]}
    assert set(e1000.subsection) - {""} == subs
    # Every class with fields has rows; the others (usb-net, rocker...) have none to show.
    empty = set(raw) - {"vmschkmachine"} - set(df.device)
    assert all(not raw[d]["Description"].get("Fields") for d in empty)
    assert len(empty) < 30


def test_schema_devices_frame_versions_come_from_the_json():
    raw = json.loads(S100.read_text())
    dev = schema_devices_frame(S100).set_index("device")
    for name in ("e1000", "ICH9-LPC", "virtio-net-pci", "usb-ehci"):
        if name in raw:
            assert dev.loc[name, "version_id"] == raw[name]["version_id"]
    assert len(dev) == len(raw) - 1
    assert (dev["fields"] > 0).sum() > 100


def test_read_schema_rejects_a_stream_file():
    with pytest.raises(DescriptionError, match="schema"):
        schema_frame(DATA / "q72-pc-q35-7.2-net.mig")


def test_field_changes_between_7_2_and_10_0():
    fc = field_changes(S72, S100)
    assert set(fc.change) <= {"added", "removed", "size", "version"}
    # Device classes 10.0 added (igb) only have added rows; ones it dropped only removed.
    assert set(fc[fc.device == "igb"].change) == {"added"}
    assert set(fc[fc.device == "pci-piix3"].change) == {"removed"}
    assert fc[fc.device == "igb"].device_old_version.isna().all()
    # Identical schemas: nothing changed.
    assert field_changes(S72, S72).empty


def test_schema_version_matrix_columns_are_machines_in_order():
    table = schema_version_matrix(SCHEMAS)
    assert list(table.columns) == sorted(table.columns, key=machine_key)
    assert table.loc["igb", "pc-q35-10.0"] == 1
    assert pd.isna(table.loc["igb", "pc-q35-7.2"])


def test_machine_key_orders_versions_numerically():
    names = ["pc-i440fx-10.0", "pc-i440fx-2.4", "pc-i440fx-7.2", "pc-i440fx-2.2"]
    assert sorted(names, key=machine_key) == [
        "pc-i440fx-2.2",
        "pc-i440fx-2.4",
        "pc-i440fx-7.2",
        "pc-i440fx-10.0",
    ]
    assert sorted(["10.0", "7.2"], key=machine_key) == ["7.2", "10.0"]


def test_device_name_strips_pci_paths():
    assert device_name("0000:00:1f.0/ICH9LPC") == "ICH9LPC"
    assert device_name("0000:00:1e.0/0000:01:01.0/e1000") == "e1000"
    assert device_name("fw_cfg") == "fw_cfg"


def test_manifest_frame_pairs_device_sets():
    m = manifest_frame()
    assert len(m) == len(json.loads((DATA_DIR / "manifest.json").read_text())["streams"])
    net = m[m.devices == "net"]
    assert set(net.qemu) == {"7.2", "10.0"}
    assert m[m.ran].devices.eq("default").all()


@pytest.fixture(scope="module")
def defaults() -> pd.DataFrame:
    return stream_devices_frame([DATA / f for f in DEFAULTS], progress=False)


def test_stream_devices_frame_reads_versions_from_sections(defaults):
    s = miglab.load(DATA / "q72-pc-i440fx-7.2-default.mig")
    mine = defaults[defaults.file == "q72-pc-i440fx-7.2-default.mig"]
    full = [x for x in s.sections if x.kind.value == "full"]
    assert list(mine.idstr) == [x.name for x in full]
    assert list(mine.version_id) == [x.version_id for x in full]
    assert mine.machine.iloc[0] == "pc-i440fx-7.2"


def test_version_matrix_shows_sections_new_machine_types_send(defaults):
    vm = version_matrix(defaults)
    assert vm.loc["PIIX3", ("pc-i440fx-2.2", "7.2")] == 3
    # pcspk has its own section only from a newer machine type on.
    assert pd.isna(vm.loc["pcspk", ("pc-i440fx-2.4", "7.2")])
    assert vm.loc["pcspk", ("pc-i440fx-10.0", "10.0")] == 1


def test_subsection_matrix_marks_undecoded_as_unknown(defaults):
    sm = subsection_matrix(defaults)
    dma = sm.loc[("fw_cfg", "fw_cfg/dma")]
    assert pd.isna(dma[("pc-i440fx-2.2", "7.2")])  # no vmdesc: not decoded
    assert not dma[("pc-i440fx-2.4", "7.2")]  # old machine type turns DMA off
    assert dma[("pc-i440fx-7.2", "7.2")]


def test_plot_section_sizes_puts_ram_first():
    s = miglab.load(DATA / "q72-pc-q35-7.2-net.mig")
    ax = plot_section_sizes(s, top=10)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "ram (all chunks)"
    assert labels[-1].endswith("others)")
    widths = [p.get_width() for p in ax.patches]
    df = miglab.sections_frame(s)
    assert widths[0] == df[df.name == "ram"]["size"].sum()
    assert widths[1:-1] == sorted(widths[1:-1], reverse=True)


def test_plot_version_heatmap_labels_cells(defaults):
    vm = version_matrix(defaults)
    ax = plot_version_heatmap(vm)
    assert len(ax.get_yticklabels()) == len(vm)
    assert {t.get_text() for t in ax.texts} >= {"3", "1"}


def test_plot_encoders_from_a_bench_table():
    bench = pd.DataFrame(
        {
            "format": ["qemu", "qemu", "cbor", "cbor"],
            "stream": ["a", "b", "a", "b"],
            "state_bytes": [10, 20, 30, 40],
            "total_bytes": [100, 200, 50, 70],
            "encode_mbps": [5.0, 7.0, 1.0, 3.0],
            "decode_mbps": [6.0, 8.0, 2.0, 4.0],
        }
    )
    size_ax, speed_ax = plot_encoders(bench)
    assert [t.get_text() for t in size_ax.get_yticklabels()] == ["cbor", "qemu"]
    assert [p.get_width() for p in speed_ax.patches] == [2.0, 6.0, 3.0, 7.0]
    with pytest.raises(KeyError, match="decode_mbps"):
        plot_encoders(bench.drop(columns="decode_mbps"))


def test_compat_matrix_from_the_stored_verdicts():
    results = pd.read_csv(DATA / "compat-matrix.csv")
    table = compat_pivot(results, "raw")
    # Same QEMU, same machine: always loads.  New machine type on old QEMU: refused.
    assert table.loc["QEMU 7.2 pc-q35-7.2 net", "QEMU 7.2"]
    assert not table.loc["QEMU 10.0 pc-q35-10.0 net", "QEMU 7.2"]
    assert table.loc["QEMU 10.0 pc-q35-7.2 net", "QEMU 7.2"]
    # miglab compat makes the new-machine stream load on the old QEMU.
    assert compat_pivot(results, "compat").loc["QEMU 10.0 pc-q35-10.0 net", "QEMU 7.2"]
    raw_ax, compat_ax = plot_compat_matrix(results, modes=["raw", "compat"])
    assert raw_ax.get_title().startswith("raw")
    assert compat_ax.get_title().startswith("compat")


def test_plot_encoders_takes_bench_measure_rows():
    rows = []
    for part, size in (("device", 10), ("stream", 100)):
        for fmt, k in (("legacy", 1), ("cbor", 2)):
            rows.append(("s", part, fmt, size * k, float(k), float(k + part.startswith("s"))))
    measured = pd.DataFrame(
        rows, columns=["stream", "part", "format", "bytes", "encode_MBps", "decode_MBps"]
    )
    size_ax, speed_ax = plot_encoders(measured)
    assert [t.get_text() for t in size_ax.get_yticklabels()] == ["legacy", "cbor"]
    # state bars are the device part's bytes; speeds are the device part's.
    assert [p.get_width() for p in size_ax.patches[:2]] == [10, 20]
    assert [p.get_width() for p in speed_ax.patches] == [1.0, 2.0, 1.0, 2.0]
