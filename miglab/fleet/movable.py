"""Can this stream move to QEMU X on machine M?  The static schema check, per stream.

:mod:`miglab.compat.schema_check` compares two ``-dump-vmstate`` schemas: everything one
build *can* send against what another can load.  A stream's vmdesc trailer says what one
VM *did* send: each device's vmsd at the section's version, the fields written and the
subsections that were needed.  So each vmdesc device is turned into a one-device
:class:`~miglab.vmstate.schema.Schema` (fields all on the wire, version = the
section's) and checked against the destination's dump with
:func:`~miglab.compat.schema_check.check_schemas`; a subsection the VM did not need cannot
break it, while a field or subsection the destination lacks does.

What a vmdesc says and what a dump says differ in ways the comparison must undo first
(:func:`_align`): vmdesc names the i-th of equal names ``name[i]`` (``unused[1]``,
``config[0]``), lists only the conditional fields taken and leaves out arrays of zero
elements, and a dump gives variable-size buffers size 0.  Dumps also list device *classes*
only: ``timer``, ``cpu``, ``apic`` and friends, and some classes (7.2 has no
``piix3-ide``), are absent although every build sends them, so a vmsd the destination's
dump lacks is reported as *unchecked* (a warning), not as breaking.  Several classes may
save one vmsd (``e1000e``, ``ich9-ahci``...); the one that fits best is taken.

Checked against ``data/compat-matrix.csv`` (real QEMU 7.2 and 10.0 loading every real
stream), the verdict is ``ok`` exactly for the streams QEMU accepted.

The machine type of a VM does not change when it moves, so a stream of another machine type
is ``other-machine``; a stream without vmdesc (``pc`` <= 2.2) is ``unknown``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from miglab.compat.schema_check import Schema, SchemaField, SchemaVmsd, check_schemas
from miglab.errors import MiglabError
from miglab.findings import ERROR, WARNING, Finding, errors

__all__ = ("VERDICTS", "Verdict", "find_schema", "layout_verdict")

#: Per-stream answers: ``ok`` (no breaking finding), ``breaks``, ``other-machine``,
#: ``unknown`` (no vmdesc to check, or no machine type named), ``unreadable`` (the file
#: did not parse).
VERDICTS = ("ok", "breaks", "other-machine", "unknown", "unreadable")

_INDEXED = re.compile(r"^(.*)\[\d+\]$")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the check says about one stream layout.

    Attributes:
        verdict: one of :data:`VERDICTS`.
        errors: breaking findings (device idstr in ``Finding.device``).
        warnings: findings that may break, the unchecked devices among them.
    """

    verdict: str
    errors: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()

    @property
    def reason(self) -> str:
        """The first breaking finding as one line (``""`` when none)."""
        if not self.errors:
            return ""
        f = self.errors[0]
        return f"{f.where}: {f.code}: {f.message}"


def find_schema(folder: str | os.PathLike[str], release: str, machine: str) -> Path:
    """The dump of QEMU ``release`` for ``machine`` in ``folder`` (``schema-R-M.json``).

    Within one build the dumps differ only in the machine name (``data/README.md``), so
    another machine's dump of the same release stands in when that one is missing.

    Raises:
        MiglabError: no dump of that release in ``folder``.
    """
    root = Path(folder)
    exact = root / f"schema-{release}-{machine}.json"
    if exact.is_file():
        return exact
    others = sorted(root.glob(f"schema-{release}-*.json"))
    if not others:
        raise MiglabError(f"no -dump-vmstate schema of QEMU {release} in {root}")
    return others[0]


def _fields(entries: Iterable[Mapping[str, Any]]) -> tuple[SchemaField, ...]:
    """vmdesc field entries as dump fields; an ``index`` run of one name becomes one field."""
    out: list[SchemaField] = []
    run: str | None = None  # the name of the ``index`` run being merged
    for e in entries:
        name = str(e.get("name", ""))
        if run is not None and name == run and out:
            out[-1] = replace(out[-1], num=(out[-1].num or 1) + 1)
            continue
        run = name if "index" in e else None
        struct = None
        if e.get("type") == "tmp":
            struct = _vmsd(e)
        elif isinstance(e.get("struct"), Mapping):
            struct = _vmsd(e["struct"])
        num = e.get("array_len")
        out.append(
            SchemaField(
                name,
                0,
                False,
                int(e.get("size", 0)),
                int(num) if isinstance(num, int) else (1 if "index" in e else None),
                struct,
            )
        )
    return tuple(out)


def _vmsd(entry: Mapping[str, Any]) -> SchemaVmsd:
    """A vmdesc device (or nested struct, subsection) as a dump vmsd at the sent version."""
    name = str(entry.get("vmsd_name", ""))
    version = int(entry.get("version", 0))
    return SchemaVmsd(
        name,
        version,
        version,
        _fields(entry.get("fields", [])),
        tuple(_vmsd(s) for s in entry.get("subsections", [])),
    )


@dataclass(slots=True)
class _Sent:
    """A stream field during alignment: its dump name, which repeat of it, whether paired."""

    name: str
    nth: int | None
    field: SchemaField
    paired: SchemaField | None = None


def _align(
    src: SchemaVmsd, dst: SchemaVmsd, path: str, absent: list[str]
) -> tuple[SchemaVmsd, SchemaVmsd]:
    """The stream's vmsd and ``dst`` made comparable, field by field.

    A dump lists every candidate field, a vmdesc only those sent, and names the i-th of
    several equal names ``name[i]``.  So a stream field ``name[i]`` is the i-th ``name`` of
    ``dst`` (and ``unused[i]``, VMSTATE_UNUSED padding, is ``unused`` anyway); a
    conditional (``field_exists``) ``dst`` field the stream lacks was not taken and is left
    out; any other ``dst`` field the stream lacks is left out too but noted in ``absent``
    (QEMU's vmdesc omits arrays of zero elements, so this may be fine); a dump size of 0
    (a variable-size buffer) takes the stream's size.  When stream fields are left without
    a counterpart, the lacking ``dst`` fields stay, so that the schema check can pair them
    up as renames (known-benign ones, like hpet's ``num_timers``, are info).
    """
    dst_names = {g.name for g in dst.fields}
    sent = []
    for f in src.fields:
        m = _INDEXED.match(f.name)
        base = m.group(1) if m else ""
        if m and f.name not in dst_names and (base in dst_names or base == "unused"):
            sent.append(_Sent(base, int(f.name[len(base) + 1 : -1]), f))
        else:
            sent.append(_Sent(f.name, None, f))
    seen: dict[str, int] = {}
    fields: list[SchemaField] = []
    pending: list[int] = []  # indexes into fields of dst fields the stream lacks
    for g in dst.fields:
        k = seen.get(g.name, 0)
        seen[g.name] = k + 1
        match = next(
            (
                x
                for x in sent
                if x.paired is None
                and x.name == g.name
                and x.nth in (None, k)
                and (g.struct is not None or g.size in (0, x.field.size))
            ),
            None,
        )
        if match is None:
            if not g.exists and g.version_id <= src.version_id:
                pending.append(len(fields))
                fields.append(g)
            continue
        f = match.field
        if g.struct is not None and f.struct is not None:
            s_struct, g_struct = _align(f.struct, g.struct, f"{path}{g.name}.", absent)
            f, g = replace(f, struct=s_struct), replace(g, struct=g_struct)
        elif g.size == 0:
            g = replace(g, size=f.size)
        match.paired = replace(f, name=g.name)
        fields.append(g)
    if all(x.paired is not None for x in sent):
        # Nothing of the stream is left to pair them with as a rename: they are absent.
        absent += [f"{path}{fields[i].name}" for i in pending]
        fields = [g for i, g in enumerate(fields) if i not in set(pending)]
    src_fields = tuple(x.paired or replace(x.field, name=x.name) for x in sent)
    theirs = {x.name: x for x in dst.subsections}
    subs, dst_subs = [], []
    for sub in src.subsections:
        if sub.name in theirs:
            a, b = _align(sub, theirs.pop(sub.name), f"{sub.name}.", absent)
            subs.append(a)
            dst_subs.append(b)
        else:
            subs.append(sub)
    dst_subs += theirs.values()
    return (
        replace(src, fields=src_fields, subsections=tuple(subs)),
        replace(dst, fields=tuple(fields), subsections=tuple(dst_subs)),
    )


def _check_device(vmsd: SchemaVmsd, dst: Schema, candidates: list[str]) -> tuple[Finding, ...]:
    """The findings against the destination class that fits best (fewest errors)."""
    best: tuple[Finding, ...] | None = None
    for name in candidates:
        absent: list[str] = []
        src, mine = _align(vmsd, dst.devices[name], "", absent)
        found = tuple(
            check_schemas(
                Schema(dst.machine, {vmsd.name: src}), Schema(dst.machine, {vmsd.name: mine})
            )
        ) + tuple(
            Finding(
                WARNING,
                "field-added",
                "DST reads it, the stream does not carry it (fine for an array of 0 elements)",
                device=vmsd.name,
                path=p,
            )
            for p in absent
        )
        if best is None or len(errors(found)) < len(errors(best)):
            best = found
    assert best is not None
    return best


def layout_verdict(
    vmdesc: str | Mapping[str, Any], dst: Schema, *, cache: dict[Any, Any] | None = None
) -> Verdict:
    """Check one stream layout (its vmdesc trailer, as JSON text or parsed) against ``dst``.

    ``cache`` (any dict, kept by the caller across layouts of one destination) remembers
    each distinct device entry's findings: a fleet repeats the same devices in many layouts.
    """
    data = json.loads(vmdesc) if isinstance(vmdesc, str) else vmdesc
    cache = {} if cache is None else cache
    if "classes" not in cache:
        classes: dict[str, list[str]] = {}
        for key, v in dst.devices.items():
            classes.setdefault(v.name, []).append(key)
        for vmsd_name, keys in classes.items():  # the class named like its vmsd first
            keys.sort()
            if vmsd_name in keys:
                keys.remove(vmsd_name)
                keys.insert(0, vmsd_name)
        cache["classes"] = classes
        cache["devices"] = {}
    classes, memo = cache["classes"], cache["devices"]
    breaking: list[Finding] = []
    warnings: list[Finding] = []
    for dev in data.get("devices", []):
        idstr = str(dev.get("name", ""))
        key = json.dumps(dev, sort_keys=True)
        found = memo.get(key)
        if found is None:
            vmsd = _vmsd(dev)
            if vmsd.name not in classes:
                detail = (
                    f"DST's -dump-vmstate has no vmsd {vmsd.name!r} (dumps list only some "
                    "device classes): unchecked"
                )
                found = (Finding(WARNING, "device-missing", detail, device=vmsd.name),)
            else:
                found = _check_device(vmsd, dst, classes[vmsd.name])
            memo[key] = found
        for f in found:
            if f.severity == ERROR:
                breaking.append(replace(f, device=idstr))
            elif f.severity == WARNING:
                warnings.append(replace(f, device=idstr))
    return Verdict("breaks" if breaking else "ok", tuple(breaking), tuple(warnings))
