"""Migration capabilities: bitmasks, their negotiation, and the encoder they choose.

Each migration endpoint answers ``query-migration-capabilities`` with a bitmask of the
features it supports and accepts ``set-migration-capabilities`` to mask them.  Bit positions
are fixed by the name table ``knowledge/capabilities.json`` (:data:`CAPABILITIES`): miglab's
own features (self-describing transport, section sizes, each encoder, compat transforms) in
bits 0-31 and real QEMU's ``MigrationCapability`` names in bits 32-63, keyed by *name*
because QEMU's enum positions move between releases (QEMU-FORMAT.md 5.4).

:func:`negotiate` queries both endpoints (and what stands between them, ``via=``), intersects,
and sets the intersection on each.  An
endpoint that answers ``CommandNotFound`` -- every QEMU today -- counts as mask 0, the
legacy stream, and is not sent the set command.  The agreed mask picks the encoder
(:func:`choose_encoder`) and whether compat transforms run (:func:`transforms_enabled`).

    >>> src, dst = LocalEndpoint(mask_of(["encoder-cbor", "encoder-json"])), LocalEndpoint(
    ...     mask_of(["encoder-json"]))
    >>> choose_encoder(negotiate(src, dst))
    'json'

Endpoints speaking QMP-style JSON over a loopback socket, and an adapter around a real QEMU,
live in :mod:`miglab.capabilities_endpoints`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from miglab.errors import CapabilityError
from miglab.knowledge import capabilities as capability_file

__all__ = (
    "CAPABILITIES",
    "ENCODER_PREFERENCE",
    "LIVE_SUPPORTS",
    "MIGLAB_BLOCK",
    "QEMU_BLOCK",
    "Endpoint",
    "LocalEndpoint",
    "choose_encoder",
    "error_reply",
    "from_qemu_capabilities",
    "mask_of",
    "names_of",
    "negotiate",
    "transforms_enabled",
)

QUERY = "query-migration-capabilities"
SET = "set-migration-capabilities"
#: Masks travel as JSON integers; a table of 64 bits bounds what a peer may send.
MASK_LIMIT = 1 << 64
#: miglab's own features (bits 0-31) and QEMU's ``MigrationCapability`` names (bits 32-63).
MIGLAB_BLOCK = (1 << 32) - 1
QEMU_BLOCK = MIGLAB_BLOCK << 32


def _load_table() -> tuple[Mapping[str, int], tuple[str, ...], tuple[str, ...]]:
    data = capability_file()
    table = {row.name: row.bit for row in sorted(data.capabilities, key=lambda row: row.bit)}
    live = tuple(row.name for row in data.live.supports)
    return MappingProxyType(table), data.encoder_preference, live


#: Capability name -> bit position, in bit order (from ``knowledge/capabilities.json``).
#: ENCODER_PREFERENCE: encoder capability names, best first.  LIVE_SUPPORTS: what miglab's
#: live path (proxy and ``miglab migrate``) supports, so offers to both QEMUs.
CAPABILITIES, ENCODER_PREFERENCE, LIVE_SUPPORTS = _load_table()


def mask_of(names: Iterable[str]) -> int:
    """The mask with the bits of ``names`` set.

    Raises:
        CapabilityError: a name is not in :data:`CAPABILITIES`.
    """
    mask = 0
    for name in names:
        if name not in CAPABILITIES:
            raise CapabilityError(f"unknown capability {name!r}; expected one of CAPABILITIES")
        mask |= 1 << CAPABILITIES[name]
    return mask


def names_of(mask: int) -> tuple[str, ...]:
    """The names of the known bits set in ``mask``, in bit order.

    Bits the table does not name (a newer peer's features) are left out: this side cannot
    use them anyway.
    """
    return tuple(name for name, bit in CAPABILITIES.items() if mask >> bit & 1)


def choose_encoder(mask: int) -> str:
    """The best encoder ``mask`` allows (``"cbor"``, ``"json"``, ...), ``"legacy"`` for 0.

    Self-describing binary formats win over schema-bound and text ones
    (:data:`ENCODER_PREFERENCE`); without any encoder bit both sides speak QEMU's own stream.
    """
    for name in ENCODER_PREFERENCE:
        if mask >> CAPABILITIES[name] & 1:
            return name.removeprefix("encoder-")
    return "legacy"


def transforms_enabled(mask: int) -> bool:
    """Whether both sides agreed to run compat transforms on the stream."""
    return bool(mask >> CAPABILITIES["compat-transforms"] & 1)


def from_qemu_capabilities(reply: Any) -> int:
    """The mask of a real QEMU's ``query-migrate-capabilities`` reply, mapped by name.

    Supported means *listed* (QEMU lists every capability it knows, enabled or not, with a
    ``state``); names this table does not know are ignored, as libvirt does.

    Args:
        reply: the returned list ``[{"capability": "xbzrle", "state": false}, ...]`` or the
            whole QMP reply ``{"return": [...]}``.

    Raises:
        CapabilityError: the reply is not such a list.
    """
    if isinstance(reply, Mapping) and "return" in reply:
        reply = reply["return"]
    if not isinstance(reply, list):
        raise CapabilityError(f"expected a list of capabilities from QEMU, got {reply!r:.80}")
    mask = 0
    for entry in reply:
        if not (isinstance(entry, Mapping) and isinstance(entry.get("capability"), str)):
            raise CapabilityError(f'expected {{"capability": name, ...}}, got {entry!r:.80}')
        bit = CAPABILITIES.get(entry["capability"])
        if bit is not None:
            mask |= 1 << bit
    return mask


class Endpoint(Protocol):
    """What :func:`negotiate` talks to: one QMP-style ``execute``."""

    def execute(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Run ``command``; return ``{"return": ...}`` or ``{"error": {"class", "desc"}}``."""
        ...


def negotiate(source: Endpoint, destination: Endpoint, *, via: Endpoint | None = None) -> int:
    """Agree on the capabilities every endpoint supports, set them on each, return the mask.

    ``via`` is what stands between the two (miglab's proxy, or the management side's own
    policy on a direct migration): what it cannot carry is agreed by nobody.  An endpoint
    without ``query-migration-capabilities`` (reply class ``CommandNotFound``) counts as
    mask 0 and is not sent ``set-migration-capabilities``.

    Raises:
        CapabilityError: an endpoint answered with another error or a malformed reply.
    """
    parties = [(source, "source"), (destination, "destination")]
    if via is not None:
        parties.append((via, "via"))
    masks = [_query(endpoint, role) for endpoint, role in parties]
    agreed = MASK_LIMIT - 1
    for mask in masks:
        agreed &= mask or 0  # None (no command) counts as 0
    for (endpoint, role), mask in zip(parties, masks, strict=True):
        if mask is not None:
            reply = endpoint.execute(SET, {"capabilities": agreed})
            if not (isinstance(reply, Mapping) and "return" in reply):
                raise CapabilityError(f"{SET} failed: {_describe(reply)}", path=role)
    return agreed


def _query(endpoint: Endpoint, role: str) -> int | None:
    """The endpoint's mask, or None when it lacks the command."""
    reply = endpoint.execute(QUERY)
    if isinstance(reply, Mapping) and isinstance(reply.get("error"), Mapping):
        if reply["error"].get("class") == "CommandNotFound":
            return None
        raise CapabilityError(f"{QUERY} failed: {_describe(reply)}", path=role)
    value = reply.get("return") if isinstance(reply, Mapping) else None
    mask = value.get("capabilities") if isinstance(value, Mapping) else None
    if not isinstance(mask, int) or isinstance(mask, bool) or not 0 <= mask < MASK_LIMIT:
        raise CapabilityError(
            f'expected {{"return": {{"capabilities": 0 <= int < 2**64}}}}, got {reply!r:.120}',
            path=role,
        )
    return mask


def _describe(reply: Any) -> str:
    """A QMP error reply's class and description, or the garbage itself, for a message."""
    if isinstance(reply, Mapping) and isinstance(reply.get("error"), Mapping):
        return f"{reply['error'].get('class')}: {reply['error'].get('desc')}"
    return f"unexpected reply {reply!r:.120}"


def error_reply(klass: str, desc: str) -> dict[str, Any]:
    """A QMP error reply (``GenericError``, ``CommandNotFound``...)."""
    return {"error": {"class": klass, "desc": desc}}


class LocalEndpoint:
    """An in-process endpoint that supports ``supported_mask``.

    ``query-migration-capabilities`` returns the supported mask (and the currently enabled
    one as ``enabled``); ``set-migration-capabilities`` enables a subset of it.  Any other
    command is ``CommandNotFound``, as in QMP.

    Attributes:
        supported: the mask this endpoint can do.
        enabled: the mask last set (all of ``supported`` until then).
    """

    def __init__(self, supported_mask: int) -> None:
        if not 0 <= supported_mask < MASK_LIMIT:
            raise CapabilityError(f"supported mask must be 0 <= mask < 2**64, got {supported_mask}")
        self.supported = supported_mask
        self.enabled = supported_mask

    def __repr__(self) -> str:
        return f"LocalEndpoint({'|'.join(names_of(self.supported)) or 0})"

    def execute(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Answer one QMP-style command."""
        if command == QUERY:
            return {"return": {"capabilities": self.supported, "enabled": self.enabled}}
        if command != SET:
            return error_reply("CommandNotFound", f"The command {command} has not been found")
        mask = (arguments or {}).get("capabilities")
        if not isinstance(mask, int) or isinstance(mask, bool) or mask < 0:
            return error_reply("GenericError", "'capabilities' must be a non-negative integer")
        if mask & ~self.supported:
            extra = names_of(mask & ~self.supported) or (hex(mask & ~self.supported),)
            return error_reply("GenericError", f"unsupported capabilities: {', '.join(extra)}")
        self.enabled = mask
        return {"return": {}}
