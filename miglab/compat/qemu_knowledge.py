"""``compat-qemu.json`` parsed once: the QEMU builds, their machine types, the machine generations.

A conversion is keyed on two things (:mod:`miglab.compat.qemu`): the QEMU build that wrote or
will read a stream, and the machine generation whose hw_compat properties shape device
state.  This module reads the knowledge file and answers the questions both need: which
builds miglab knows (:data:`QEMU_VERSIONS`, in release order), which machine types a build
has, which build a machine type is the newest of, and which generation a machine type falls
in (the file itself is parsed by :func:`miglab.knowledge.compat_qemu`).  Only versioned ``pc-i440fx-X.Y`` / ``pc-q35-X.Y`` names count: aliases such as ``q35``
name different machines in different builds.
"""

from __future__ import annotations

import re

from miglab.compat.registry import MACHINE_PREFIX
from miglab.errors import CompatError
from miglab.knowledge import compat_qemu

__all__ = (
    "MACHINE_GENERATIONS",
    "QEMU_VERSIONS",
    "check_machine",
    "machine_generation",
    "parse_machine",
    "qemu_of_machine",
)


QEMU_VERSIONS: tuple[str, ...] = tuple(compat_qemu().qemu)
#: Machine generations, oldest first (``machine:7.2``, ``machine:10.0``).
MACHINE_GENERATIONS: tuple[str, ...] = tuple(
    g for g in compat_qemu().generations() if g.startswith(MACHINE_PREFIX)
)

_MACHINE = re.compile(r"(pc-(?:i440fx|q35))-(\d+\.\d+)")


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def parse_machine(machine: str) -> tuple[str, tuple[int, int]]:
    """``pc-q35-7.2`` -> (``pc-q35``, (7, 2)).

    Raises:
        CompatError: not a versioned pc-i440fx/pc-q35 machine name (aliases such as ``q35``
            name different machines in different builds).
    """
    m = _MACHINE.fullmatch(machine)
    if m is None:
        raise CompatError(
            f"machine type {machine!r} is not a versioned pc-i440fx-X.Y or pc-q35-X.Y name"
        )
    return m.group(1), _version(m.group(2))


def _has_machine(qemu: str, machine: str) -> bool:
    family, version = parse_machine(machine)
    span = compat_qemu().qemu[qemu].machines.get(family)
    return span is not None and _version(span[0]) <= version <= _version(span[1])


def check_machine(qemu: str, machine: str, role: str) -> None:
    """Refuse a machine type build ``qemu`` does not have.

    Raises:
        CompatError: ``machine`` is not versioned, or outside the build's span of its
            family; the path is ``role``.
    """
    if not _has_machine(qemu, machine):
        spans = compat_qemu().qemu[qemu].machines
        known = ", ".join(f"{f}-{lo} ... {f}-{hi}" for f, (lo, hi) in spans.items())
        raise CompatError(f"QEMU {qemu} has no machine type {machine!r} ({known})", path=role)


def qemu_of_machine(machine: str) -> str:
    """The QEMU version whose newest machine is ``machine`` (``pc-q35-10.0`` -> ``10.0``).

    Older machine types (pc-q35-2.4 ... 7.2) exist in several builds, so they tell nothing:
    give :func:`convert_stream` a ``from_qemu``.

    Raises:
        CompatError: ``machine`` is the newest machine of no QEMU miglab knows.
    """
    m = _MACHINE.fullmatch(machine)
    if m is not None:
        for qemu, know in compat_qemu().qemu.items():
            span = know.machines.get(m.group(1))
            if span is not None and span[1] == m.group(2):
                return qemu
    raise CompatError(
        f"cannot tell the QEMU version of machine {machine!r}: it is the newest machine of "
        f"none of {QEMU_VERSIONS}; say which QEMU wrote the stream (from_qemu, --from-qemu)"
    )


def machine_generation(machine: str | None) -> str | None:
    """The machine generation of ``machine`` (``pc-q35-7.2`` -> ``machine:7.2``).

    A machine of no known generation (pc-q35-9.0, or ``None``: a stream without a
    configuration block, pc <= 2.3) gives None.
    """
    if machine is None:
        return None
    _, version = parse_machine(machine)
    for g in MACHINE_GENERATIONS:
        lo, hi = compat_qemu().generations()[g]
        if _version(lo) <= version <= _version(hi):
            return g
    return None
