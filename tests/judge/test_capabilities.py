"""Capability negotiation with a real, paused QEMU 7.2 and 10.0 behind a ``QemuEndpoint``.

The name table, negotiation, encoder choice and socket endpoints are ``tests/test_capabilities.py``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from miglab.capabilities import (
    CAPABILITIES,
    LocalEndpoint,
    choose_encoder,
    mask_of,
    names_of,
    negotiate,
)
from miglab.capabilities_endpoints import QemuEndpoint
from miglab.qemu import find_qemu, private_event_loop

# --- real QEMU ---------------------------------------------------------------------------------


@contextlib.contextmanager
def running_qemu(version: str, machine: str) -> Iterator[QemuEndpoint]:
    """A paused real QEMU behind a QemuEndpoint; killed on exit."""
    binary = find_qemu(version)  # raises QemuNotFound, so a missing QEMU fails the test
    with tempfile.TemporaryDirectory(prefix="miglab-caps-") as tmp, private_event_loop():
        sock = str(Path(tmp) / "qmp.sock")
        monitor = QEMUMonitorProtocol(sock, server=True)
        argv = binary.command(
            "-machine", machine, "-nodefaults", "-display", "none", "-S", "-qmp", f"unix:{sock}"
        )
        process = subprocess.Popen(
            argv,
            env={**os.environ, **binary.env},
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            monitor.accept(30)
            monitor.settimeout(10)
            yield QemuEndpoint(monitor)
        finally:
            monitor.close()
            process.kill()
            process.wait()


QEMUS = [("7.2", "pc-q35-7.2"), ("10.0", "pc-q35-10.0")]


@pytest.fixture
def qemu_endpoint(request: pytest.FixtureRequest) -> Iterator[QemuEndpoint]:
    with running_qemu(*request.param) as endpoint:
        yield endpoint


@pytest.mark.qemu
@pytest.mark.parametrize("qemu_endpoint", QEMUS, indirect=True, ids=["7.2", "10.0"])
def test_qemu_endpoint(qemu_endpoint: QemuEndpoint) -> None:
    raw = qemu_endpoint.execute("query-migrate-capabilities")["return"]
    assert {entry["capability"] for entry in raw} <= set(CAPABILITIES)  # every name is in the table
    mask = qemu_endpoint.execute("query-migration-capabilities")["return"]["capabilities"]
    assert set(names_of(mask)) == {entry["capability"] for entry in raw}
    assert qemu_endpoint.execute("no-such-command")["error"]["class"] == "CommandNotFound"
    # A capability enabled beforehand that nobody else supports must end up off.
    caps = [{"capability": "x-ignore-shared", "state": True}]
    assert "return" in qemu_endpoint.execute("migrate-set-capabilities", {"capabilities": caps})
    # QEMU knows none of miglab's own features: negotiation falls back to the legacy stream.
    agreed = negotiate(
        qemu_endpoint, LocalEndpoint(mask_of(["encoder-cbor", "events", "mapped-ram"]))
    )
    assert choose_encoder(agreed) == "legacy"
    assert qemu_endpoint.enabled == agreed
    assert "events" in names_of(agreed)
    # Applied for real: QEMU itself now reports exactly the agreed set enabled.
    states = qemu_endpoint.execute("query-migrate-capabilities")["return"]
    assert {e["capability"] for e in states if e["state"]} == set(names_of(agreed))


@pytest.mark.qemu
def test_qemu_7_2_and_10_0_differ_by_name() -> None:
    masks = {}
    for version, machine in QEMUS:
        with running_qemu(version, machine) as endpoint:
            reply = endpoint.execute("query-migration-capabilities")
            masks[version] = reply["return"]["capabilities"]
    # compress and block left in 9.1; switchover-ack, dirty-limit (8.1) and mapped-ram (9.0) arrived.
    assert set(names_of(masks["7.2"] & ~masks["10.0"])) == {"compress", "block"}
    assert set(names_of(masks["10.0"] & ~masks["7.2"])) == {
        "switchover-ack",
        "dirty-limit",
        "mapped-ram",
    }
