"""miglab.devices.pci walks a config space's capability lists, on real and hostile input.

The expected lists of the real e1000e come from QEMU's ``e1000e_pci_realize``
(hw/net/e1000e.c): MSI-X at 0xA0, PCI Express at 0xE0, MSI at 0xD0, PM at 0xC8,
each added in that order at the head of the list by ``pci_add_capability``, so the
list reads backwards; AER at 0x100 and the serial number at 0x140 are appended.
"""

from __future__ import annotations

import pytest

import miglab
from miglab.devices.pci import (
    PCI_CAP_ID_EXP,
    PCI_CAP_ID_MSIX,
    capability_list,
    extended_capability_list,
    find_capability,
)
from tests.helpers import DATA


def _e1000e_config() -> bytes:
    stream = miglab.load(DATA / "q100-pc-q35-10.0-net.mig")
    (e1000e,) = [s for s in stream.sections if s.name.endswith("/e1000e")]
    return bytes(e1000e.payload.fields["parent_obj[0]"].fields["config[1]"])


def test_the_lists_of_a_real_e1000e() -> None:
    config = _e1000e_config()
    assert list(capability_list(config)) == [(0x01, 0xC8), (0x05, 0xD0), (0x10, 0xE0), (0x11, 0xA0)]
    assert list(extended_capability_list(config)) == [(0x0001, 0x100), (0x0003, 0x140)]
    assert find_capability(config, PCI_CAP_ID_MSIX) == 0xA0
    assert find_capability(config, PCI_CAP_ID_EXP) == 0xE0
    assert find_capability(config, 0x0003, extended=True) == 0x140
    assert find_capability(config, 0x09) is None
    assert list(extended_capability_list(config[:256])) == []  # a 256-byte space has none


def _space(size: int, chain: dict[int, int], ext: dict[int, int] | None = None) -> bytes:
    """A config space whose standard list is ``first -> ...`` from ``chain`` (offset -> next,
    id 0x09), the list pointer at the first key; ``ext``: offset -> next of the extended list."""
    config = bytearray(size)
    config[0x06] = 0x10  # PCI_STATUS_CAP_LIST
    if chain:
        config[0x34] = next(iter(chain))
        for at, nxt in chain.items():
            config[at : at + 2] = bytes((0x09, nxt))
    for at, nxt in (ext or {}).items():
        config[at : at + 4] = (0x000B | 1 << 16 | nxt << 20).to_bytes(4, "little")
    return bytes(config)


@pytest.mark.parametrize(
    ("chain", "size", "offsets"),
    [
        ({0x40: 0x50, 0x50: 0x40}, 256, [0x40, 0x50]),  # a loop
        ({0x48: 0x48}, 256, [0x48]),  # a capability pointing at itself
        (
            {**{a: a + 4 for a in range(0x40, 0xFC, 4)}, 0xFC: 0x40},
            256,
            list(range(0x40, 0x100, 4)),
        ),
        ({0x40: 0x80}, 0x60, [0x40]),  # next past a short config
        ({0x80: 0x40}, 0x60, []),  # first past a short config
        ({0x40: 0x20}, 256, [0x40]),  # next into the header
        ({0x10: 0x40}, 256, []),  # first into the header
        ({0x40: 0x53, 0x50: 0}, 256, [0x40, 0x50]),  # an unaligned pointer is aligned down
    ],
)
def test_hostile_standard_lists_end(chain: dict[int, int], size: int, offsets: list[int]) -> None:
    assert [at for _, at in capability_list(_space(size, chain))] == offsets


def test_a_list_the_status_does_not_announce_is_not_walked() -> None:
    config = bytearray(_space(256, {0x40: 0}))
    config[0x06] = 0
    assert list(capability_list(bytes(config))) == []
    assert list(capability_list(b"\x00\x00\x00\x00\x00\x00\x10")) == []  # shorter than 0x35


@pytest.mark.parametrize(
    ("ext", "size", "offsets"),
    [
        ({0x100: 0x200, 0x200: 0x100}, 4096, [0x100, 0x200]),  # a loop
        ({0x100: 0x100}, 4096, [0x100]),  # pointing at itself
        ({0x100: 0x40}, 4096, [0x100]),  # back into the standard space
        ({0x100: 0x300}, 0x200, [0x100]),  # past the config
        ({0x100: 0xFFF, 0xFFC: 0}, 4096, [0x100, 0xFFC]),  # aligned down to the last dword
    ],
)
def test_hostile_extended_lists_end(ext: dict[int, int], size: int, offsets: list[int]) -> None:
    assert [at for _, at in extended_capability_list(_space(size, {}, ext))] == offsets
