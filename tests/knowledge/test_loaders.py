"""miglab.knowledge: every shipped file loads whole, and a hand-edited one fails clearly.

A knowledge file is read by one typed loader; these tests check that each record keeps
everything its file says (re-encoded, it is the file again), that the accessors cache,
and that a corrupted copy gives one :class:`~miglab.errors.KnowledgeError` naming the file
and the JSON path of the bad member -- the dict keys included, which msgspec alone does
not report.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import miglab.knowledge as knowledge
from miglab.errors import KnowledgeError, MiglabError
from miglab.knowledge import FILES, decode_knowledge
from tests.helpers import ROOT

DIR = ROOT / "miglab" / "knowledge"
ACCESSORS: dict[str, Callable[[], object]] = {
    "capabilities.json": knowledge.capabilities,
    "compat-qemu.json": knowledge.compat_qemu,
    "compat-schema-safe.json": knowledge.schema_safe,
    "compat-virtio.json": knowledge.compat_virtio,
    "e1000-registers.json": knowledge.e1000_registers,
    "machine-devices.json": knowledge.machine_harvest,
    "pci-config.json": knowledge.pci_config,
    "schema-renames.json": knowledge.schema_renames,
}


def _raw(name: str) -> Any:
    return json.loads((DIR / name).read_text())


def _meaningful(value: Any) -> Any:
    """``value`` without absent-or-default members (null, "", false, []) on both sides."""
    if isinstance(value, dict):
        return {k: _meaningful(v) for k, v in value.items() if v not in (None, "", False, [])}
    if isinstance(value, list):
        while value and value[-1] is None:
            value = value[:-1]
        return [_meaningful(v) for v in value]
    return value


def test_every_file_has_a_loader() -> None:
    assert sorted(p.name for p in DIR.glob("*.json")) == sorted(FILES) == sorted(ACCESSORS)


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_file_loads_whole_and_once(name: str) -> None:
    record = ACCESSORS[name]()
    assert isinstance(record, FILES[name])
    assert ACCESSORS[name]() is record  # parsed once
    again = json.loads(msgspec.json.encode(record))
    assert _meaningful(again) == _meaningful(_raw(name))


def test_records_answer_what_the_files_say() -> None:
    qemu = knowledge.compat_qemu()
    assert list(qemu.qemu) == ["5.2", "7.2", "10.0", "11.1"]
    assert qemu.qemu["10.0"].machines["pc-q35"] == ("2.4", "10.0")
    assert list(qemu.generations()) == [f"machine:{v}" for v in ("5.2", "7.2", "10.0", "11.1")]
    assert knowledge.e1000_registers().registers["RCTL"] == 0x100  # E1000_RCTL, e1000_regs.h
    assert knowledge.pci_config().capabilities[0x10].name == "EXP"  # PCI_CAP_ID_EXP
    assert knowledge.compat_virtio().devices["virtio-balloon"].vectors["10.0"] == 2


def _corrupt(name: str, edit: Callable[[Any], None]) -> KnowledgeError:
    data = copy.deepcopy(_raw(name))
    edit(data)
    with pytest.raises(KnowledgeError) as info:
        decode_knowledge(name, json.dumps(data), FILES[name])
    return info.value


def _set(*path: str | int, to: Any) -> Callable[[Any], None]:
    def edit(data: Any) -> None:
        for step in path[:-1]:
            data = data[step]
        data[path[-1]] = to

    return edit


def _rename(*path: str | int, old: str, new: str) -> Callable[[Any], None]:
    def edit(data: Any) -> None:
        for step in path:
            data = data[step]
        data[new] = data.pop(old)

    return edit


@pytest.mark.parametrize(
    ("name", "edit", "path", "says"),
    [
        (
            "compat-qemu.json",
            _set("qemu", "10.0", "max_command", to="11"),
            "$.qemu['10.0'].max_command",
            "Expected `int`, got `str`",
        ),
        (
            "compat-qemu.json",
            _set("transforms", 0, "edits", 0, "op", to="frobnicate"),
            "$.transforms[0].edits[0].op",
            "Invalid value 'frobnicate'",
        ),
        (
            "compat-virtio.json",
            _set("devices", "virtio-balloon", "layouts", "7.2", "config", to="not hex"),
            "$.devices['virtio-balloon'].layouts['7.2']",
            "config is not hex",
        ),
        (
            "machine-devices.json",
            _rename("builds", "10.0", "pluggable", "q35", old="devices", new="devicez"),
            "$.builds['10.0'].pluggable.q35",
            "unknown field `devicez`",
        ),
        (
            "machine-devices.json",
            _set("builds", "7.2", "boards", "pc-q35-7.2", "tcg", to=999),
            "$.builds['7.2']",
            "'pc-q35-7.2'",
        ),
        (
            "pci-config.json",
            _set("extended_capabilities", "1", "registers", 0, 1, to=None),
            "$.extended_capabilities['1'].registers[0][1]",
            "Expected `int`, got `null`",
        ),
        (
            "capabilities.json",
            _set("capabilities", 1, "bit", to=0),
            "$",
            "two capabilities share a bit",
        ),
        (
            "schema-renames.json",
            _rename("devices", 0, old="to", new="into"),
            "$.devices[0]",
            "unknown field `into`",
        ),
        ("e1000-registers.json", _set("registers", "RCTL", to=-4), "$.registers.RCTL", ">= 0"),
        # the cross-references (one check_refs each)
        (
            "e1000-registers.json",
            _set("registers", "RCTL", to=32768 * 4),
            "$",
            "register RCTL is past mac_reg",
        ),
        (
            "capabilities.json",
            _set("encoder_preference", 2, to="encoder-asn2"),
            "$",
            "'encoder-asn2' is no capability",
        ),
        (
            "pci-config.json",
            _set("header", "common", 2, to=["COMMAND", 4, 2, "NO_SUCH_TABLE"]),
            "$",
            "register COMMAND names bit table 'NO_SUCH_TABLE', which 'bits' does not have",
        ),
        (
            "machine-devices.json",
            _rename("builds", "7.2", "boards", "pc-q35-7.2", old="tcg", new="hvf"),
            "$",
            "builds['7.2'].boards['pc-q35-7.2'] names config 'hvf', which 'configs' lacks",
        ),
    ],
)
def test_a_corrupted_copy_names_file_and_path(
    name: str, edit: Callable[[Any], None], path: str, says: str
) -> None:
    err = _corrupt(name, edit)
    assert (err.file, err.path) == (name, path)
    assert says in err.message
    assert str(err).startswith(f"miglab/knowledge/{name} at {path}: ")
    assert isinstance(err, MiglabError) and isinstance(err, ValueError)


def test_text_that_is_no_json_is_refused() -> None:
    cut = (DIR / "schema-renames.json").read_bytes()[:-20]
    with pytest.raises(KnowledgeError, match=r"schema-renames.json at \$: not JSON: .*truncated"):
        decode_knowledge("schema-renames.json", cut, FILES["schema-renames.json"])
