"""Real-QEMU tests of miglab.qemu: QEMU makes a stream, judges it, rejects a broken one.

Every test runs on each of the four builds (5.2 and 11.1 in their chroots).  In CI a missing
build fails them (scripts/install-qemu.sh installs all four); elsewhere it skips them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miglab.qemu import QEMU_VERSIONS, QemuBinary, QemuError, QemuTimeout
from tests.helpers import NEWEST_PC, qemu_build

pytestmark = pytest.mark.qemu

#: How each build's destination says it rejected a stream (QEMU 11.1 reworded it).
LOAD_FAILED = {
    "5.2": "error while loading state",
    "7.2": "error while loading state",
    "10.0": "error while loading state",
    "11.1": "load of migration failed",
}


@pytest.fixture(scope="module", params=QEMU_VERSIONS)
def qemu(request: pytest.FixtureRequest) -> QemuBinary:
    return qemu_build(request.param)


@pytest.fixture(scope="module")
def stream(qemu: QemuBinary, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"qemu{qemu.version}") / "paused.mig"
    return qemu.make_stream(out, machine=NEWEST_PC[qemu.version], memory="16M")


def test_stream_starts_with_qevm_magic(stream: Path) -> None:
    assert stream.read_bytes()[:8] == b"QEVM\x00\x00\x00\x03"


def test_judge_accepts_what_qemu_made(qemu: QemuBinary, stream: Path) -> None:
    result = qemu.judge(stream, machine=NEWEST_PC[qemu.version], memory="16M")
    assert (result.accepted, result.status) == (True, "completed"), result.stderr


def test_judge_rejects_truncated_stream(qemu: QemuBinary, stream: Path, tmp_path: Path) -> None:
    # Cut inside the RAM pages: a cut in the vmdesc trailer alone is accepted (QEMU skips it).
    data = stream.read_bytes()
    truncated = tmp_path / "truncated.mig"
    truncated.write_bytes(data[: len(data) // 2])
    result = qemu.judge(truncated, machine=NEWEST_PC[qemu.version], memory="16M")
    assert not result.accepted
    assert result.status != "completed"
    assert LOAD_FAILED[qemu.version] in result.stderr


def test_dump_vmstate_gives_schema(qemu: QemuBinary, tmp_path: Path) -> None:
    schema = json.loads(
        qemu.dump_vmstate(tmp_path / "schema.json", machine=NEWEST_PC[qemu.version]).read_text()
    )
    assert schema["vmschkmachine"] == {"Name": NEWEST_PC[qemu.version]}


def test_make_stream_is_bounded_in_time(qemu: QemuBinary, tmp_path: Path) -> None:
    with pytest.raises(QemuTimeout):
        qemu.make_stream(tmp_path / "slow.mig", machine="pc", run_seconds=30, timeout=0.5)
    assert not (tmp_path / "slow.mig").exists()


def test_make_stream_reports_qemu_stderr(qemu: QemuBinary, tmp_path: Path) -> None:
    with pytest.raises(QemuError, match="no-such-device"):
        qemu.make_stream(tmp_path / "bad.mig", machine="pc", devices=["no-such-device"])
