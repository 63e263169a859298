"""Capability masks: the name table, negotiation, encoder choice, socket endpoints.

The real-QEMU endpoint is ``tests/judge/test_capabilities.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miglab.capabilities import (
    CAPABILITIES,
    LocalEndpoint,
    choose_encoder,
    from_qemu_capabilities,
    mask_of,
    names_of,
    negotiate,
    transforms_enabled,
)
from miglab.capabilities_endpoints import SocketEndpoint, serve_endpoint
from miglab.errors import CapabilityError

#: QEMU's MigrationCapability enum in enum order (QEMU-FORMAT.md 5.2).
QEMU_NAMES = [
    "xbzrle",
    "rdma-pin-all",
    "auto-converge",
    "zero-blocks",
    "compress",
    "events",
    "postcopy-ram",
    "x-colo",
    "release-ram",
    "block",
    "return-path",
    "pause-before-switchover",
    "multifd",
    "dirty-bitmaps",
    "postcopy-blocktime",
    "late-block-activate",
    "x-ignore-shared",
    "validate-uuid",
    "background-snapshot",
    "zero-copy-send",
    "postcopy-preempt",
    "switchover-ack",
    "dirty-limit",
    "mapped-ram",
]


class Recording:
    """A fake endpoint: canned replies per command, and every call recorded."""

    def __init__(self, replies: Mapping[str, Any]) -> None:
        self.replies = replies
        self.calls: list[tuple[str, Any]] = []

    def execute(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        self.calls.append((command, arguments))
        if command in self.replies:
            return self.replies[command]
        return {
            "error": {
                "class": "CommandNotFound",
                "desc": f"The command {command} has not been found",
            }
        }


def legacy() -> Recording:
    """Today's QEMU: no capability commands at all."""
    return Recording({})


# --- the name table --------------------------------------------------------------------------


def test_table_bits_are_unique_and_pinned() -> None:
    bits = list(CAPABILITIES.values())
    assert len(set(bits)) == len(bits)
    assert bits == sorted(bits) and all(0 <= b < 64 for b in bits)
    # Bit positions are a wire contract: once given, never moved.
    assert list(CAPABILITIES.items())[:10] == [
        ("self-describing", 0),
        ("section-sizes", 1),
        ("encoder-legacy", 2),
        ("encoder-sized", 3),
        ("encoder-json", 4),
        ("encoder-cbor", 5),
        ("encoder-msgpack", 6),
        ("encoder-asn1-ber", 7),
        ("encoder-asn1-per", 8),
        ("compat-transforms", 9),
    ]
    assert {name: CAPABILITIES[name] for name in QEMU_NAMES} == {
        name: 32 + i for i, name in enumerate(QEMU_NAMES)
    }


def test_mask_of_and_names_of() -> None:
    assert mask_of([]) == 0
    assert mask_of(["encoder-json", "events"]) == (1 << 4) | (1 << 37)
    assert names_of((1 << 4) | (1 << 37) | (1 << 63)) == (
        "encoder-json",
        "events",
    )  # bit 63 unnamed
    with pytest.raises(CapabilityError, match="no-such"):
        mask_of(["no-such"])


def test_choose_encoder_and_transforms() -> None:
    assert choose_encoder(0) == "legacy"
    assert choose_encoder(mask_of(["encoder-json", "encoder-cbor", "encoder-sized"])) == "cbor"
    assert choose_encoder(mask_of(["encoder-asn1-per", "encoder-msgpack"])) == "msgpack"
    assert choose_encoder(mask_of(["encoder-json", "section-sizes"])) == "json"
    assert choose_encoder(mask_of(["events", "multifd"])) == "legacy"
    assert transforms_enabled(mask_of(["compat-transforms"]))
    assert not transforms_enabled(mask_of(["encoder-cbor"]))


def test_from_qemu_capabilities_maps_by_name() -> None:
    reply = {
        "return": [{"capability": "events", "state": False}, {"capability": "x-new", "state": True}]
    }
    assert from_qemu_capabilities(reply) == mask_of(["events"])
    for garbage in ({"return": {}}, [{"state": True}], None, ["events"]):
        with pytest.raises(CapabilityError):
            from_qemu_capabilities(garbage)


# --- negotiation -----------------------------------------------------------------------------


def test_negotiate_intersects_and_sets_both() -> None:
    src = LocalEndpoint(
        mask_of(["encoder-cbor", "encoder-json", "compat-transforms", "section-sizes"])
    )
    dst = LocalEndpoint(mask_of(["encoder-json", "compat-transforms", "encoder-msgpack"]))
    agreed = negotiate(src, dst)
    assert names_of(agreed) == ("encoder-json", "compat-transforms")
    assert src.enabled == dst.enabled == agreed
    assert (choose_encoder(agreed), transforms_enabled(agreed)) == ("json", True)


def test_endpoint_without_the_command_counts_as_zero_and_is_not_set() -> None:
    old = legacy()
    new = Recording(
        {
            "query-migration-capabilities": {"return": {"capabilities": mask_of(["encoder-cbor"])}},
            "set-migration-capabilities": {"return": {}},
        }
    )
    assert negotiate(new, old) == 0
    assert old.calls == [("query-migration-capabilities", None)]
    assert new.calls[-1] == ("set-migration-capabilities", {"capabilities": 0})
    assert choose_encoder(negotiate(old, legacy())) == "legacy"


@pytest.mark.parametrize(
    "reply",
    [
        {"error": {"class": "GenericError", "desc": "busy"}},
        {"return": {"capabilities": "7"}},
        {"return": {"capabilities": True}},
        {"return": {"capabilities": -1}},
        {"return": {"capabilities": 1 << 64}},
        {"return": []},
        None,
        "garbage",
    ],
)
def test_garbage_replies_are_capability_errors(reply: Any) -> None:
    with pytest.raises(CapabilityError):
        negotiate(Recording({"query-migration-capabilities": reply}), LocalEndpoint(1))


def test_refused_set_is_a_capability_error() -> None:
    stubborn = Recording(
        {
            "query-migration-capabilities": {"return": {"capabilities": 3}},
            "set-migration-capabilities": {"error": {"class": "GenericError", "desc": "no"}},
        }
    )
    with pytest.raises(CapabilityError, match="GenericError: no"):
        negotiate(LocalEndpoint(1), stubborn)


def test_local_endpoint_refuses_unsupported_bits() -> None:
    endpoint = LocalEndpoint(mask_of(["encoder-json"]))
    reply = endpoint.execute(
        "set-migration-capabilities", {"capabilities": mask_of(["encoder-cbor"])}
    )
    assert reply["error"]["class"] == "GenericError" and "encoder-cbor" in reply["error"]["desc"]
    assert endpoint.execute("query-status")["error"]["class"] == "CommandNotFound"


masks = st.integers(min_value=0, max_value=(1 << 64) - 1)


@given(masks, masks)
def test_negotiate_is_commutative_and_a_subset_of_both(a: int, b: int) -> None:
    ab = negotiate(LocalEndpoint(a), LocalEndpoint(b))
    ba = negotiate(LocalEndpoint(b), LocalEndpoint(a))
    assert ab == ba
    assert ab & ~a == 0 and ab & ~b == 0


# --- over a loopback socket --------------------------------------------------------------------


def test_socket_round_trip() -> None:
    remote_side = LocalEndpoint(mask_of(["encoder-cbor", "encoder-msgpack", "compat-transforms"]))
    with serve_endpoint(remote_side) as server, SocketEndpoint(*server.address) as remote:
        agreed = negotiate(remote, LocalEndpoint(mask_of(["encoder-msgpack", "compat-transforms"])))
        assert names_of(agreed) == ("encoder-msgpack", "compat-transforms")
        assert remote_side.enabled == agreed
        assert remote.execute("query-migration-capabilities")["return"]["enabled"] == agreed
        assert remote.execute("migrate")["error"]["class"] == "CommandNotFound"
    with serve_endpoint(legacy()) as server, SocketEndpoint(*server.address) as remote:
        assert negotiate(remote, LocalEndpoint(mask_of(["encoder-cbor"]))) == 0


def test_socket_server_answers_garbage_with_errors() -> None:
    with (
        serve_endpoint(LocalEndpoint(1)) as server,
        socket.create_connection(server.address, timeout=5) as raw,
    ):
        lines = raw.makefile("rwb")
        assert b'"QMP"' in lines.readline()
        for request in (b"{nope\n", b"[1]\n", b'{"execute": "x", "arguments": 3}\n'):
            lines.write(request)
            lines.flush()
            assert b'"GenericError"' in lines.readline()


def test_socket_endpoints_are_loopback_only() -> None:
    with pytest.raises(CapabilityError, match="loopback"):
        serve_endpoint(LocalEndpoint(1), host="0.0.0.0")
    with pytest.raises(CapabilityError, match="loopback"):
        SocketEndpoint("192.0.2.1", 4444)
    server = serve_endpoint(LocalEndpoint(1))
    port = server.address[1]
    server.close()
    with pytest.raises(CapabilityError, match="cannot connect"):
        SocketEndpoint("127.0.0.1", port)
