"""Two streams compared section by section, field by field, byte by byte.

:func:`diff_streams` answers what a virtualization engineer asks first of
two streams (a capture and its converted copy, the same guest saved by two
QEMU builds): which device sections only one has, which changed version,
and which members differ, with the old and new values.  Buffers are
compared byte by byte and reported as runs of differing bytes at their
offsets; a PCI config space (the ``config`` buffer of a ``PCIDevice``
struct) is reported per register, with the capability it belongs to and
the bits that flipped (:mod:`miglab.analysis.pci_config`).

Device sections (FULL) are matched by idstr and instance id.  RAM is
compared by its block list (names and lengths), not by page contents: a
running guest's pages differ from one save to the next.  A section miglab
kept undecoded is compared as one buffer.

Member paths join struct members with ``/`` and mark a subsection with
``@`` (``pm/@ich9_pm/pcihp``), as :mod:`miglab.compat` reports do.  An array
the reader split into ``name``, ``name#1`` (two builds' vmdescs list it
differently) is compared as one array.

This module is plain Python (no pandas), so ``miglab diff`` starts fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from miglab.analysis.pci_config import bit_changes, register_map
from miglab.stream.jsonview import as_text
from miglab.stream.model import Opaque, Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.vmstate.state import VMState

__all__ = ("FieldChange", "SectionDiff", "StreamDiff", "diff_states", "diff_streams")

#: A byte run ends after this many equal bytes: nearby changes read as one run.
_RUN_GAP = 4

Status = Literal["changed", "only-a", "only-b"]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One difference inside a section.

    Attributes:
        path: the member path (``parent_obj[0]/config[1]``, ``core/mac_reg[3]``).
        before: the value in A (int, text, or hex for bytes), None if A lacks it.
        after: the value in B, None if B lacks it.
        offset: for a buffer, the offset of the first differing byte in it.
        register: for a PCI config space, the register (``STATUS``,
            ``EXP@0x80 EXP_DEVCAP``); ``unlisted bytes`` outside every known one.
        bits: the flipped bits, named where PCI names them (``bit 5 EXT_TAG 0->1``).
    """

    path: str
    before: Any
    after: Any
    offset: int | None = None
    register: str | None = None
    bits: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = self.path
        if self.offset is not None:
            where += f" @0x{self.offset:x}"
        if self.register:
            where += f" {self.register}"
        if self.before is None:
            return f"{where}: only in B: {_show(self.after)}"
        if self.after is None:
            return f"{where}: only in A: {_show(self.before)}"
        text = f"{where}: {_show(self.before)} -> {_show(self.after)}"
        return text + (f" ({'; '.join(self.bits)})" if self.bits else "")

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON-ready values."""
        return {
            "path": self.path,
            "before": self.before,
            "after": self.after,
            "offset": self.offset,
            "register": self.register,
            "bits": list(self.bits),
        }


@dataclass(frozen=True, slots=True)
class SectionDiff:
    """A device section that differs: only in one stream, or with changed members.

    Attributes:
        name: the idstr (``0000:00:02.0/e1000e``).
        instance_id: the instance id.
        status: ``changed``, ``only-a`` or ``only-b``.
        versions: the section's version in A and in B (None where absent).
        changes: the member differences (empty for ``only-*``).
    """

    name: str
    instance_id: int
    status: Status
    versions: tuple[int | None, int | None]
    changes: tuple[FieldChange, ...] = ()

    def __str__(self) -> str:
        a, b = self.versions
        if self.status == "only-a":
            return f"{self.name} instance {self.instance_id}: only in A (version {a})"
        if self.status == "only-b":
            return f"{self.name} instance {self.instance_id}: only in B (version {b})"
        version = f"version {a}" if a == b else f"version {a} -> {b}"
        lines = [f"{self.name} instance {self.instance_id} ({version}):"]
        lines += [f"  {c}" for c in self.changes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The section's differences as JSON-ready values."""
        return {
            "name": self.name,
            "instance_id": self.instance_id,
            "status": self.status,
            "versions": list(self.versions),
            "changes": [c.to_dict() for c in self.changes],
        }


@dataclass(frozen=True, slots=True)
class StreamDiff:
    """Everything two streams differ in; false when they hold the same state.

    Attributes:
        machines: the machine type of A and of B.
        sections: the sections that differ, in A's order, then those only in B.
        identical: how many sections both streams hold unchanged.
    """

    machines: tuple[str | None, str | None]
    sections: tuple[SectionDiff, ...] = field(default=())
    identical: int = 0

    def __bool__(self) -> bool:
        return bool(self.sections) or self.machines[0] != self.machines[1]

    def section(self, name: str, instance_id: int = 0) -> SectionDiff | None:
        """The difference of one section (matched by idstr or its vmsd part), or None."""
        for s in self.sections:
            if s.instance_id == instance_id and name in (s.name, s.name.rsplit("/", 1)[-1]):
                return s
        return None

    def __str__(self) -> str:
        a, b = self.machines
        lines = [f"machine: {a}" if a == b else f"machine: {a} -> {b}"]
        lines += [str(s) for s in self.sections]
        lines.append(f"{len(self.sections)} section(s) differ, {self.identical} identical")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The whole diff as JSON-ready values (``miglab diff --json``)."""
        return {
            "machines": list(self.machines),
            "identical": self.identical,
            "sections": [s.to_dict() for s in self.sections],
        }


def diff_streams(a: Stream, b: Stream) -> StreamDiff:
    """Compare the device sections and RAM block lists of two streams (see the module)."""
    left, right = _sections(a), _sections(b)
    out: list[SectionDiff] = []
    identical = 0
    for key, sa in left.items():
        sb = right.get(key)
        if sb is None:
            out.append(SectionDiff(key[0], key[1], "only-a", (sa.version_id, None)))
            continue
        changes = tuple(_payload_changes(sa, sb))
        if changes or sa.version_id != sb.version_id:
            versions = (sa.version_id, sb.version_id)
            out.append(SectionDiff(key[0], key[1], "changed", versions, changes))
        else:
            identical += 1
    for key, sb in right.items():
        if key not in left:
            out.append(SectionDiff(key[0], key[1], "only-b", (None, sb.version_id)))
    return StreamDiff((a.machine, b.machine), tuple(out), identical)


def diff_states(a: VMState, b: VMState) -> list[FieldChange]:
    """Every member two states differ in, in A's wire order, then members only B has."""
    left, right = dict(_leaves(a, "")), dict(_leaves(b, ""))
    out: list[FieldChange] = []
    for path, (va, vmsd) in left.items():
        if path not in right:
            out.append(FieldChange(path, _plain(va), None))
        else:
            out += _value_changes(path, va, right[path][0], vmsd)
    out += [FieldChange(p, None, _plain(v)) for p, (v, _) in right.items() if p not in left]
    return out


def _sections(stream: Stream) -> dict[tuple[str, int], Section]:
    """FULL sections by (idstr, instance), and RAM's first START as ``ram``."""
    out: dict[tuple[str, int], Section] = {}
    for s in stream.sections:
        if s.kind is SectionKind.FULL or (
            s.kind is SectionKind.START and isinstance(s.payload, RamPayload)
        ):
            out.setdefault((s.name, s.instance_id), s)
    return out


def _payload_changes(a: Section, b: Section) -> Iterator[FieldChange]:
    pa, pb = a.payload, b.payload
    if isinstance(pa, VMState) and isinstance(pb, VMState):
        yield from diff_states(pa, pb)
    elif isinstance(pa, RamPayload) and isinstance(pb, RamPayload):
        yield from _ram_changes(pa, pb)
    elif isinstance(pa, Opaque) and isinstance(pb, Opaque):
        yield from _byte_changes("(undecoded)", bytes(pa.data), bytes(pb.data))
    else:
        yield FieldChange("(payload)", _kind(pa), _kind(pb))


def _kind(p: Any) -> str:
    if isinstance(p, Opaque):
        return f"undecoded ({p.reason})"
    return "decoded" if isinstance(p, VMState) else type(p).__name__


def _ram_changes(a: RamPayload, b: RamPayload) -> Iterator[FieldChange]:
    la = {blk.name: blk.used_length for blk in a.block_list or ()}
    lb = {blk.name: blk.used_length for blk in b.block_list or ()}
    for name in [*la, *(n for n in lb if n not in la)]:
        if la.get(name) != lb.get(name):
            yield FieldChange(f"blocks/{name}", la.get(name), lb.get(name))


def _joined(fields: dict[str, Any]) -> dict[str, Any]:
    """Members the reader split as ``name``, ``name#1``... joined back into one array.

    A vmdesc may list one array in pieces (QEMU 10.0 writes ich9_ahci's six
    ports as five plus one, 7.2 as one entry of six), so the same device
    reads as ``dev`` [6] from one build and ``dev`` [5] + ``dev#1`` from
    another.  Joined (nulls dropped), both are ``dev`` [6].
    """
    if not any("#" in name for name in fields):
        return fields
    out: dict[str, Any] = {}
    for name, value in fields.items():
        base = name.split("#", 1)[0]
        if base == name and base not in out:
            out[name] = value
            continue
        have = out.get(base)
        parts = [x for x in (have, value) if x is not None]
        flat = [e for x in parts for e in (x if isinstance(x, list) else [x])]
        out[base] = flat if len(flat) != 1 or isinstance(have, list) else flat[0]
    return out


def _leaves(state: VMState, prefix: str) -> Iterator[tuple[str, Any]]:
    """(path, (value, vmsd name)) for every non-struct member, subsections included."""
    for name, value in _joined(state.fields).items():
        path = prefix + name
        if isinstance(value, VMState):
            yield from _leaves(value, path + "/")
        elif isinstance(value, list) and value and all(isinstance(v, VMState) for v in value):
            for i, v in enumerate(value):
                yield from _leaves(v, f"{path}[{i}]/")
        else:
            yield path, (value, state.name)
    for name, sub in state.subsections.items():
        yield from _leaves(sub, f"{prefix}@{name}/")


def _value_changes(path: str, a: Any, b: Any, vmsd: str) -> list[FieldChange]:
    if isinstance(a, bytes | bytearray | memoryview) and isinstance(
        b, bytes | bytearray | memoryview
    ):
        a, b = bytes(a), bytes(b)
        if a == b:
            return []
        if vmsd == "PCIDevice" and path.rsplit("/", 1)[-1].startswith("config"):
            return list(_pci_changes(path, a, b))
        return list(_byte_changes(path, a, b))
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [FieldChange(path + "[]", f"{len(a)} elements", f"{len(b)} elements")]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += _value_changes(f"{path}[{i}]", x, y, vmsd)
        return out
    if a == b and type(a) is type(b):
        return []
    return [FieldChange(path, _plain(a), _plain(b))]


def _plain(v: Any) -> Any:
    """A JSON-ready value: bytes as hex, states as their member count."""
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    if isinstance(v, VMState):
        return f"<{v.name}: {len(v.fields)} members>"
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _runs(a: bytes, b: bytes) -> Iterator[tuple[int, int]]:
    """[start, end) of the runs of differing bytes (equal gaps under _RUN_GAP joined)."""
    start = end = -1
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            if start >= 0 and i - end >= _RUN_GAP:
                yield start, end
                start = -1
            if start < 0:
                start = i
            end = i + 1
    if start >= 0:
        yield start, end


def _byte_changes(path: str, a: bytes, b: bytes) -> Iterator[FieldChange]:
    for start, end in _runs(a, b):
        yield FieldChange(path, a[start:end].hex(), b[start:end].hex(), offset=start)
    if len(a) != len(b):
        yield FieldChange(path, _sized(a), _sized(b))


def _sized(data: bytes) -> str:
    """``32 bytes``, with the C string they hold (``'prelaunch' in 32 bytes``)."""
    text = as_text(data)
    return f"{text!r} in {len(data)} bytes" if text else f"{len(data)} bytes"


def _pci_changes(path: str, a: bytes, b: bytes) -> Iterator[FieldChange]:
    """Per register of A's (else B's) config layout, with the bits that flipped."""
    regs = register_map(a) or register_map(b)
    covered: set[int] = set()
    for r in regs:
        if r.offset + r.size > min(len(a), len(b)):
            continue
        covered.update(range(r.offset, r.offset + r.size))
        ra, rb = a[r.offset : r.offset + r.size], b[r.offset : r.offset + r.size]
        if ra == rb:
            continue
        va, vb = int.from_bytes(ra, "little"), int.from_bytes(rb, "little")
        width = 2 * r.size
        bits = tuple(bit_changes(r, va, vb))
        yield FieldChange(path, f"0x{va:0{width}x}", f"0x{vb:0{width}x}", r.offset, r.name, bits)
    rest_a = bytes(0 if i in covered else x for i, x in enumerate(a))
    rest_b = bytes(0 if i in covered else x for i, x in enumerate(b))
    for change in _byte_changes(path, rest_a, rest_b):
        yield FieldChange(change.path, change.before, change.after, change.offset, "unlisted bytes")


def _show(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and not -10 < v < 10:
        return f"{v} (0x{v & (2**64 - 1):x})" if v < 0 else f"{v} (0x{v:x})"
    return str(v)
