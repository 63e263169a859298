"""check-schemas on the real 7.2 and 10.0 dumps in data/, on mutated copies, and on garbage."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from miglab.cli import main
from miglab.compat.schema_check import (
    CODES,
    check_schemas,
    compatibility,
    load_schema,
    machine_devices,
)
from miglab.errors import CompatError, DescriptionError, MiglabError
from miglab.findings import ERROR, INFO, WARNING, Finding
from miglab.limits import LIMITS
from tests.helpers import DATA

Q35_72 = DATA / "schema-7.2-pc-q35-7.2.json"
Q35_100 = DATA / "schema-10.0-pc-q35-10.0.json"
PC_72 = DATA / "schema-7.2-pc-i440fx-7.2.json"
PC_22 = DATA / "schema-7.2-pc-i440fx-2.2.json"
REAL_72 = json.loads(Q35_72.read_text())


@pytest.fixture(scope="module")
def real() -> list[Finding]:
    """Findings for 7.2 streams loaded by 10.0 (q35)."""
    return check_schemas(Q35_72, Q35_100)


def one(findings: list[Finding], device: str, field: str | None, kind: str) -> Finding:
    hits = [f for f in findings if (f.device, f.path, f.code) == (device, field, kind)]
    assert len(hits) == 1, (device, field, kind, hits)
    return hits[0]


def hpet_schema() -> dict[str, Any]:
    """A schema holding only the real 7.2 hpet entry (deep copy, to mutate)."""
    return {"vmschkmachine": {"Name": "pc-q35-7.2"}, "hpet": copy.deepcopy(REAL_72["hpet"])}


def hpet_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return schema["hpet"]["Description"]["Fields"]


def write(tmp_path: Path, name: str, schema: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(schema))
    return str(path)


# --- real schemas -------------------------------------------------------------------------


def test_known_benign_hpet_rename_is_info(real: list[Finding]) -> None:
    # 7.2 saves hpet "num_timers", 10.0 "num_timers_save" (same u8 at the same place).
    finding = one(real, "hpet", "num_timers", "field-renamed")
    assert finding.severity == INFO
    assert "num_timers_save" in finding.message


def test_nested_esp_version_change(real: list[Finding]) -> None:
    # The esp struct inside am53c974 is vmsd "esp" version 6 in 7.2, 7 in 10.0.
    finding = one(real, "am53c974", "esp", "version")
    assert "6 in SRC, 7 in DST" in finding.message
    assert one(real, "am53c974", "esp.drq_state", "field-added").severity == ERROR
    unknown = one(real, "am53c974", "esp.ti_cmd", "field-renamed")
    assert (unknown.severity, "mig_ti_cmd" in unknown.message) == (ERROR, True)


def test_fields_retired_into_padding(real: list[Finding]) -> None:
    # sb16 irq, dma, hdma, port, ver (5 x 4 bytes) became VMSTATE_UNUSED(20) in 10.0.
    finding = one(real, "sb16", "irq", "field-renamed")
    assert finding.severity == INFO
    assert "20 bytes" in finding.message
    assert not [f for f in real if f.device == "sb16" and f.path in ("dma", "ver")]


def test_devices_missing_or_found_by_vmsd(real: list[Finding]) -> None:
    assert one(real, "sysbus-ahci", None, "device-missing").severity == ERROR
    # pci-piix3 is gone in 10.0, but class PIIX3 saves the same vmsd "PIIX3" unchanged.
    assert "'PIIX3'" in one(real, "pci-piix3", None, "device-renamed").message
    assert one(real, "vmschkmachine", None, "machine").severity == WARNING


def test_every_finding_is_well_formed(real: list[Finding]) -> None:
    assert real
    for f in real:
        assert f.code in CODES
        assert f.severity in (ERROR, WARNING, INFO)
        assert set(f.to_dict()) == {"severity", "code", "message", "offset", "device", "path"}


def test_real_cli_json_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-schemas", str(Q35_72), str(Q35_100), "--json"]) == 1
    out = capsys.readouterr()
    rows = json.loads(out.out)
    keys = ["severity", "code", "message", "offset", "device", "path"]
    assert all(list(row) == keys for row in rows)
    assert {"device": "sysbus-ahci", "path": None, "code": "device-missing"}.items() <= next(
        r for r in rows if r["device"] == "sysbus-ahci"
    ).items()
    assert "BACKWARD (DST loads SRC streams): broken" in out.err


def test_identical_schemas_have_no_findings(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_schemas(Q35_72, Q35_72) == []
    assert main(["check-schemas", str(Q35_72), str(Q35_72), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_same_binary_other_machine_only_warns() -> None:
    # One 7.2 binary dumps the same device classes for every machine type.
    findings = check_schemas(PC_22, PC_72)
    assert [(f.code, f.severity) for f in findings] == [("machine", WARNING)]
    assert main(["check-schemas", str(PC_22), str(PC_72)]) == 0


# --- the device classes of one machine type (knowledge/machine-devices.json) ---------------


def test_what_a_q35_of_10_0_can_have_from_the_schema_alone() -> None:
    can = machine_devices(Q35_100, "pc-q35-10.0")
    assert can.build == "10.0"  # recognised by its classes
    # The q35 board: TCG's interrupt controllers and KVM's in-kernel ones.
    assert {"ICH9-LPC", "mch", "q35-pcihost", "isa-i8259", "kvm-i8259", "kvmclock"} <= can.board
    # -device on PCI, on a bus a plugged device brings (USB, SCSI), and what those create.
    assert {"e1000e", "ufs", "pcie-root-port", "usb-tablet", "scsi-hd"} <= can.pluggable
    assert {"virtio-net-device", "virtio-blk-device"} <= can.pluggable
    # Other boards' sysbus devices, an abstract base, no -device on x86, refused at realize.
    for cls in ("acpi-ged", "sysbus-esp", "uefi-vars-sysbus", "pic-common", "emmc", "xen-platform"):
        assert cls not in can, cls
    assert "vmschkmachine" in can


def test_an_i440fx_has_no_q35_chipset() -> None:
    can = machine_devices(PC_72, "pc-i440fx-7.2")
    assert {"PIIX3", "i440FX", "piix3-ide"} <= can.board
    assert not {"ICH9-LPC", "mch", "q35-pcihost"} & (can.board | can.pluggable)
    assert "ICH9-LPC" in machine_devices(Q35_72, "q35")  # the alias of pc-q35-7.2


def test_check_for_a_machine_keeps_only_its_devices() -> None:
    # A pc-q35-7.2 guest on QEMU 10.0 going back to 7.2.
    every = check_schemas(Q35_100, Q35_72)
    mine = check_schemas(Q35_100, Q35_72, machine="pc-q35-7.2")
    can = machine_devices(Q35_100, "pc-q35-7.2")
    assert set(mine) <= set(every)
    gone = {f.device for f in every} - {f.device for f in mine}
    assert gone == set(can.excluded(f.device for f in every))
    assert {"xen-platform", "acpi-ged", "emmc", "sysbus-esp"} <= gone
    # With a UFS controller (a PCI -device on 10.0) it cannot go: 7.2 has no such class.
    assert one(mine, "ufs", None, "device-missing").severity == ERROR


def test_machine_type_one_side_lacks_is_the_one_finding() -> None:
    lacking = Finding(
        ERROR, "machine", "DST's build has no machine type 'pc-q35-10.0'", device="vmschkmachine"
    )
    assert check_schemas(Q35_100, Q35_72, machine="pc-q35-10.0") == [lacking]
    with pytest.raises(CompatError, match=r"QEMU 7.2 .* has no machine type 'pc-q35-10.0'"):
        machine_devices(Q35_72, "pc-q35-10.0")
    with pytest.raises(CompatError, match="no device list for machine type 'microvm'"):
        check_schemas(Q35_72, Q35_100, machine="microvm")


def test_a_schema_of_another_build_is_judged_by_every_build() -> None:
    schema = copy.deepcopy(REAL_72)
    schema["made-up-device"] = copy.deepcopy(REAL_72["hpet"])
    can = machine_devices(schema, "pc-q35-7.2")
    assert can.build is None
    assert "made-up-device" in can  # no harvested build knows it: kept
    assert "ICH9-LPC" in can and "sysbus-esp" not in can


# --- mutated copies -----------------------------------------------------------------------


def test_renamed_field(tmp_path: Path) -> None:
    dst = hpet_schema()
    hpet_fields(dst)[1]["field"] = "interrupt_status"  # was "isr"
    finding = one(check_schemas(hpet_schema(), dst), "hpet", "isr", "field-renamed")
    assert finding.severity == ERROR
    assert "interrupt_status" in finding.message


def test_resized_field_and_later_mismatch_both_found() -> None:
    # QEMU's checker stops at the first mismatch of a vmsd; this one reports both.
    dst = hpet_schema()
    hpet_fields(dst)[0]["size"] = 4  # config
    hpet_fields(dst)[4]["Description"]["Fields"][2]["size"] = 4  # timer.cmp
    findings = check_schemas(hpet_schema(), dst)
    assert one(findings, "hpet", "config", "field-resized").severity == ERROR
    assert one(findings, "hpet", "timer.cmp", "field-resized").severity == ERROR
    assert len(findings) == 2


def test_reordered_fields() -> None:
    dst = hpet_schema()
    fields = hpet_fields(dst)
    fields[0], fields[1] = fields[1], fields[0]
    findings = check_schemas(hpet_schema(), dst)
    assert [(f.code, f.severity) for f in findings] == [("field-reordered", ERROR)]


def test_removed_subsection_breaks_only_one_direction(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    src = hpet_schema()
    dst = hpet_schema()
    dst["hpet"]["Description"]["Subsections"].pop()  # hpet/offset
    finding = one(check_schemas(src, dst), "hpet", "hpet/offset", "subsection-missing")
    assert finding.severity == ERROR
    assert one(check_schemas(dst, src), "hpet", "hpet/offset", "subsection-added").severity == INFO
    a, b = write(tmp_path, "a.json", src), write(tmp_path, "b.json", dst)
    assert main(["check-schemas", b, a]) == 0  # BACKWARD: the fuller schema loads old streams
    assert main(["check-schemas", b, a, "--direction", "forward"]) == 1
    assert main(["check-schemas", b, a, "--direction", "full"]) == 1
    assert "FORWARD (SRC loads DST streams): broken, 1 error;" in capsys.readouterr().out
    report = compatibility(b, a)
    assert (report.backward_ok, report.forward_ok, report.full_ok) == (True, False, False)


def test_bumped_version() -> None:
    src = hpet_schema()
    src["hpet"]["version_id"] = src["hpet"]["Description"]["version_id"] = 3
    newer = one(check_schemas(src, hpet_schema()), "hpet", None, "version")
    assert (newer.severity, "stream version 3 > DST version_id 2" in newer.message) == (ERROR, True)
    older = one(check_schemas(hpet_schema(), src), "hpet", None, "version")
    assert older.severity == INFO


def test_raised_minimum_version() -> None:
    dst = hpet_schema()
    dst["hpet"]["Description"]["minimum_version_id"] = 2
    dst["hpet"]["Description"]["version_id"] = 3
    src = hpet_schema()
    src["hpet"]["Description"]["version_id"] = 1
    hpet_fields(src)[3]["version_id"] = 0  # keep the 7.2 num_timers on the wire at version 1
    finding = one(check_schemas(src, dst), "hpet", None, "minimum-version")
    assert finding.severity == ERROR


def test_added_field_needs_a_version_bump() -> None:
    extra = {"field": "extra", "version_id": 0, "field_exists": False, "size": 4}
    dst = hpet_schema()
    hpet_fields(dst).append(extra)
    assert one(check_schemas(hpet_schema(), dst), "hpet", "extra", "field-added").severity == ERROR
    hpet_fields(dst)[-1]["version_id"] = 3
    dst["hpet"]["Description"]["version_id"] = 3
    findings = check_schemas(hpet_schema(), dst)
    assert one(findings, "hpet", "extra", "field-added").severity == INFO
    assert one(findings, "hpet", None, "version").severity == INFO
    assert (
        one(check_schemas(dst, hpet_schema()), "hpet", "extra", "field-removed").severity == ERROR
    )


def test_field_versioned_differently() -> None:
    dst = hpet_schema()
    hpet_fields(dst)[3]["version_id"] = 3  # num_timers: DST reads it only from version 3
    finding = one(check_schemas(hpet_schema(), dst), "hpet", "num_timers", "field-versioned")
    assert finding.severity == ERROR


# --- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b"not json",
        b"[1, 2]",
        b'{"hpet": {"Name": "hpet"}}',
        b'{"hpet": {"Description": {"name": "hpet", "version_id": "2", "minimum_version_id": 1}}}',
        b'{"hpet": {"Description": {"name": "h", "version_id": 1, "minimum_version_id": 1, "Fields": [{"field": 3}]}}}',
        b'{"vmschkmachine": 7}',
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "text",
        "list",
        "no-description",
        "str-version",
        "field-name",
        "machine",
        "binary",
        "deep-json",
    ],
)
def test_malformed_schema_is_a_description_error(text: bytes, tmp_path: Path) -> None:
    with pytest.raises(DescriptionError):
        load_schema(text)
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    assert main(["check-schemas", str(path), str(Q35_72)]) == 2


def test_limits_are_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    nested: dict[str, Any] = {
        "name": "leaf",
        "version_id": 1,
        "minimum_version_id": 1,
        "Fields": [],
    }
    for depth in range(LIMITS.max_depth + 1):
        field = {"field": f"s{depth}", "version_id": 0, "field_exists": False, "size": 1}
        nested = {**field, "Description": nested}
        nested = {"name": f"d{depth}", "version_id": 1, "minimum_version_id": 1, "Fields": [nested]}
    with pytest.raises(DescriptionError, match="max_depth"):
        load_schema({"deep": {"Description": nested}})
    monkeypatch.setattr(LIMITS, "max_schema_bytes", 1000)
    with pytest.raises(MiglabError, match="max_schema_bytes"):
        load_schema(Q35_72)
