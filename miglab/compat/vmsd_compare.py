"""One device's vmsd trees compared field by field, every difference a finding.

The core of the static check (:mod:`miglab.compat.schema_check`, whose docstring has the
wire rules it follows): :class:`VmsdComparison` aligns two vmsds' field lists
(``difflib``), then finds moves, fields retired into ``VMSTATE_UNUSED`` padding, renames
of the same shape, added and removed fields, and compares each aligned pair (version
gates, ``field_exists``, sizes, counts, nested structs), recursing into structs and
subsections.  Known-benign renames are data (``knowledge/schema-renames.json``, read once
by :func:`known_renames`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache

from miglab.findings import ERROR, INFO, WARNING, Finding, Severity
from miglab.knowledge import schema_renames
from miglab.vmstate.schema import SchemaField, SchemaVmsd

__all__ = ("Renames", "VmsdComparison", "known_renames")


@dataclass(frozen=True, slots=True)
class Renames:
    """``knowledge/schema-renames.json``: (vmsd, field) and device-class renames, both ways."""

    fields: Mapping[tuple[str, str], tuple[str, str]]  # (vmsd, src name) -> (dst name, why)
    devices: Mapping[str, tuple[str, str]]  # src class -> (dst class, why)


@cache
def known_renames() -> Renames:
    data = schema_renames()
    fields: dict[tuple[str, str], tuple[str, str]] = {}
    for r in data.fields:
        fields[r.vmsd, r.old] = (r.new, r.why)
        fields[r.vmsd, r.new] = (r.old, r.why)
    devices: dict[str, tuple[str, str]] = {}
    for d in data.devices:
        devices[d.old] = (d.new, d.why)
        devices[d.new] = (d.old, d.why)
    return Renames(fields, devices)


def _same_shape(f: SchemaField, g: SchemaField) -> bool:
    """Both structs, or scalars of one size: what the wire cannot tell apart."""
    if f.struct is not None or g.struct is not None:
        return f.struct is not None and g.struct is not None
    return f.size == g.size and f.num == g.num


def _bytes(f: SchemaField) -> int:
    """Bytes a scalar field takes on the wire (element size times ``num`` when known)."""
    return f.size * (f.num or 1)


class VmsdComparison:
    """Compares one device's vmsd trees, collecting findings under member paths."""

    def __init__(self, device: str, renames: Renames) -> None:
        self.device = device
        self.renames = renames

    def _f(self, path: str | None, code: str, detail: str, severity: Severity) -> Finding:
        return Finding(severity, code, detail, device=self.device, path=path)

    def section(self, src: SchemaVmsd, dst: SchemaVmsd, path: str | None) -> Iterator[Finding]:
        """A top-level vmsd or subsection: its version travels in the stream."""
        v = src.version_id
        if v > dst.version_id:
            yield self._f(
                path, "version", f"stream version {v} > DST version_id {dst.version_id}", ERROR
            )
        elif v < dst.minimum_version_id:
            detail = f"stream version {v} < DST minimum_version_id {dst.minimum_version_id}"
            yield self._f(path, "minimum-version", detail, ERROR)
        elif (src.version_id, src.minimum_version_id) != (dst.version_id, dst.minimum_version_id):
            detail = (
                f"versions {src.minimum_version_id}..{src.version_id} in SRC, "
                f"{dst.minimum_version_id}..{dst.version_id} in DST; DST loads version {v}"
            )
            yield self._f(path, "version", detail, INFO)
        yield from self.fields(src, dst, path, v, v)
        known = {s.name: s for s in dst.subsections}
        for sub in src.subsections:
            if sub.name in known:
                yield from self.section(sub, known.pop(sub.name), sub.name)
            else:
                detail = (
                    f"DST does not know subsection {sub.name!r}; a stream that carries it fails"
                )
                yield self._f(sub.name, "subsection-missing", detail, ERROR)
        for name in known:
            yield self._f(name, "subsection-added", f"DST-only subsection {name!r}", INFO)

    def fields(
        self, src: SchemaVmsd, dst: SchemaVmsd, path: str | None, v_write: int, v_read: int
    ) -> Iterator[Finding]:
        """Align the two field lists and compare every pair, never stopping early."""
        prefix = f"{path}." if path else ""
        a = [self._key(src.name, f.name, dst) for f in src.fields]
        b = [f.name for f in dst.fields]
        pairs: list[tuple[int, int]] = []
        blocks: list[tuple[range, range]] = []  # replaced stretches: rename candidates
        removed: list[int] = []
        added: list[int] = []
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                pairs += zip(range(i1, i2), range(j1, j2), strict=True)
                continue
            if op == "replace":
                blocks.append((range(i1, i2), range(j1, j2)))
            removed += range(i1, i2)
            added += range(j1, j2)
        # A name deleted at one place and inserted at another moved.
        for i in list(removed):
            j = next((j for j in added if b[j] == a[i]), None)
            if j is not None:
                removed.remove(i)
                added.remove(j)
                if src.fields[i].version_id <= v_write:
                    detail = f"field {a[i]!r} is at position {i} in SRC, {j} in DST"
                    yield self._f(prefix + src.fields[i].name, "field-reordered", detail, ERROR)
                pairs.append((i, j))
        for rows, cols in blocks:
            yield from self._padding(src, dst, rows, cols, removed, added, prefix)
        # What is left in a replaced stretch, in order and of the same shape, is a rename.
        for rows, cols in blocks:
            left = [j for j in cols if j in added]
            for i in [i for i in rows if i in removed]:
                f = src.fields[i]
                j = next((j for j in left if _same_shape(f, dst.fields[j])), None)
                if j is None:
                    continue
                left = left[left.index(j) + 1 :]
                removed.remove(i)
                added.remove(j)
                g = dst.fields[j]
                on_wire = f.version_id <= v_write or g.version_id <= v_read
                detail = f"renamed {f.name!r} -> {g.name!r} (unknown rename: meaning may differ)"
                yield self._f(prefix + f.name, "field-renamed", detail, ERROR if on_wire else INFO)
                pairs.append((i, j))
        for i in removed:
            f = src.fields[i]
            if f.version_id > v_write:
                detail = f"SRC-only field, not written at version {v_write}"
                yield self._f(prefix + f.name, "field-removed", detail, INFO)
            else:
                detail = "SRC writes it, DST does not read it"
                if f.exists:
                    detail += " (when its field_exists test holds)"
                yield self._f(
                    prefix + f.name, "field-removed", detail, WARNING if f.exists else ERROR
                )
        for j in added:
            g = dst.fields[j]
            if g.version_id > v_read:
                detail = f"DST-only field gated by version {g.version_id} > {v_read}, so skipped"
                yield self._f(prefix + g.name, "field-added", detail, INFO)
            else:
                detail = (
                    f"DST reads it from version {g.version_id} <= {v_read}; SRC does not write it"
                )
                if g.exists:
                    detail += " (when its field_exists test holds)"
                yield self._f(
                    prefix + g.name, "field-added", detail, WARNING if g.exists else ERROR
                )
        for i, j in sorted(pairs):
            yield from self.pair(src, src.fields[i], dst.fields[j], prefix, v_write, v_read)

    def _padding(
        self,
        src: SchemaVmsd,
        dst: SchemaVmsd,
        rows: range,
        cols: range,
        removed: list[int],
        added: list[int],
        prefix: str,
    ) -> Iterator[Finding]:
        """Fields retired into ``VMSTATE_UNUSED`` padding (named "unused"), or revived from it.

        Padding is skipped on load, so SRC fields whose bytes add up to a DST "unused" are
        dropped values, not a broken stream (QEMU's checker tracks the same byte counts).
        Dumps before QEMU ~8.1 give arrays no ``num``, so one field retired into padding of
        another size cannot be verified: a warning.  The reverse, DST reading real fields
        from bytes SRC wrote as padding, loads but yields zeros: also a warning.
        """
        mine = [i for i in rows if i in removed]
        theirs = [j for j in cols if j in added]
        for side, pads, others, fields, pad_fields in (
            ("DST", theirs, mine, src.fields, dst.fields),
            ("SRC", mine, theirs, dst.fields, src.fields),
        ):
            for p in [p for p in pads if pad_fields[p].name == "unused"]:
                run, total = [], 0
                for o in others:
                    if fields[o].struct is not None or total >= pad_fields[p].size:
                        break
                    run.append(o)
                    total += _bytes(fields[o])
                lone = len(run) == 1 and fields[run[0]].num is None
                if not run or (total != pad_fields[p].size and not lone):
                    continue
                names = ", ".join(repr(fields[o].name) for o in run)
                if side == "DST":
                    detail = f"{names} retired into {pad_fields[p].size} bytes of unused padding"
                    severity: Severity = INFO if total == pad_fields[p].size else WARNING
                    if severity == WARNING:
                        detail += f"; SRC gives no 'num', so {total} vs {pad_fields[p].size} bytes is unverified"
                    path = prefix + fields[run[0]].name
                    drop_src, drop_dst = run, [p]
                else:
                    detail = (
                        f"DST reads {names} from {pad_fields[p].size} bytes SRC writes as padding"
                    )
                    severity = WARNING
                    path = prefix + fields[run[0]].name
                    drop_src, drop_dst = [p], run
                yield self._f(path, "field-renamed", detail, severity)
                for o in drop_src:
                    removed.remove(o)
                    mine.remove(o)
                for o in drop_dst:
                    added.remove(o)
                    theirs.remove(o)

    def _key(self, vmsd: str, name: str, dst: SchemaVmsd) -> str:
        """The name a SRC field is expected under in DST (after a known rename)."""
        rename = self.renames.fields.get((vmsd, name))
        if rename and any(g.name == rename[0] for g in dst.fields):
            return rename[0]
        return name

    def pair(
        self,
        vmsd: SchemaVmsd,
        f: SchemaField,
        g: SchemaField,
        prefix: str,
        v_write: int,
        v_read: int,
    ) -> Iterator[Finding]:
        """Compare one aligned pair of fields."""
        path = prefix + f.name
        written, read = f.version_id <= v_write, g.version_id <= v_read
        wire: Severity = ERROR if written or read else INFO
        if f.name != g.name and self.renames.fields.get((vmsd.name, f.name), ("",))[0] == g.name:
            why = self.renames.fields[vmsd.name, f.name][1]
            yield self._f(
                path, "field-renamed", f"known-benign rename {f.name!r} -> {g.name!r}: {why}", INFO
            )
        if written != read:
            detail = (
                f"SRC {'writes' if written else 'skips'} it (version_id {f.version_id}, "
                f"stream {v_write}), DST {'reads' if read else 'skips'} it "
                f"(version_id {g.version_id}, stream {v_read})"
            )
            yield self._f(path, "field-versioned", detail, ERROR)
        elif f.version_id != g.version_id:
            detail = f"version_id {f.version_id} in SRC, {g.version_id} in DST (same on the wire)"
            yield self._f(path, "field-versioned", detail, INFO)
        if f.exists != g.exists:
            detail = f"field_exists {f.exists} in SRC, {g.exists} in DST"
            yield self._f(path, "field-conditional", detail, WARNING if written and read else INFO)
        if (f.struct is None) != (g.struct is None):
            detail = f"{'struct' if f.struct else 'scalar'} in SRC, {'struct' if g.struct else 'scalar'} in DST"
            yield self._f(path, "field-resized", detail, wire)
        elif f.struct is not None and g.struct is not None:
            # VMS_STRUCT: each side saves/loads the nested vmsd at its own version.
            if f.struct.version_id != g.struct.version_id:
                detail = (
                    f"nested vmsd {g.struct.name!r} is version {f.struct.version_id} in SRC, "
                    f"{g.struct.version_id} in DST (each side uses its own; fields decide)"
                )
                yield self._f(path, "version", detail, INFO)
            yield from self.fields(
                f.struct, g.struct, path, f.struct.version_id, g.struct.version_id
            )
        elif f.size != g.size:
            yield self._f(path, "field-resized", f"size {f.size} in SRC, {g.size} in DST", wire)
        if f.num is not None and g.num is not None and f.num != g.num:
            yield self._f(path, "field-resized", f"{f.num} elements in SRC, {g.num} in DST", wire)
