"""miglab.analysis.elf_core: where guest RAM goes in the ELF core's physical address space.

The layouts for big guests are QEMU's own examples (``hw/i386/pc_piix.c``, the comment above
``pc_init1``'s split; ``hw/i386/pc_q35.c``).  The guest kernel judges ``miglab export-elf`` in
``tests/judge/analysis/test_elf_core.py``.
"""

from __future__ import annotations

import pytest

from miglab.analysis.elf_core import physical_ranges
from miglab.errors import MiglabError

MiB, GiB = 1 << 20, 1 << 30


@pytest.mark.parametrize(
    ("machine", "ram", "low"),
    [
        ("pc-i440fx-7.2", 4 * GiB, 3072 * MiB),  # "qemu -M pc -m 4G -> 3072M low, 1024M high"
        ("pc-i440fx-7.2", 3 * GiB, 3 * GiB),  # under 3.5G: all of it below 4G
        ("pc-q35-7.2", 4 * GiB, 2 * GiB),  # >= 2.75G: 2G below 4G
        ("pc-q35-7.2", 2 * GiB + 512 * MiB, 2 * GiB + 512 * MiB),
    ],
)
def test_split_around_the_pci_hole(machine: str, ram: int, low: int) -> None:
    want = [(0, 0, low)] + ([(4 * GiB, low, ram - low)] if ram > low else [])
    assert physical_ranges(machine, ram) == want


def test_unknown_machine_is_refused() -> None:
    with pytest.raises(MiglabError, match="virt"):
        physical_ranges("virt-7.2", GiB)
