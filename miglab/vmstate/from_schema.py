"""Descriptions from a ``-dump-vmstate`` schema, for streams without a vmdesc.

A schema (QEMU-FORMAT.md 4.1) lists every device class's vmsd: field names,
versions, element sizes, nested descriptions and subsections, but no type
names, no ``needed``/``field_exists`` predicates and, before QEMU 8.1, no
array lengths.  So one schema entry stands for a small family of possible
wire layouts.  :class:`SchemaIndex` turns an entry into candidate
:class:`~miglab.vmstate.description.VMStateDescription` objects and keeps
the first whose decode ends exactly where the section must end (the caller's
``boundary_ok``), trying in order:

1. predicated fields (``field_exists: true``) present, then with one, two...
   of them absent;
2. every field as a single element (or ``num`` elements when the schema
   gives ``num``), then one field as an array whose length is inferred from
   the bytes left before the next subsection or record boundary.  When an
   earlier integer field holds that length the array is taken as QEMU's
   ``VMS_VARRAY`` of that field, else as a fixed array.

Sizes map to ``uint8``/``uint16``/``uint32``/``uint64`` (``unused*`` fields
to ``unused_buffer``), other sizes to buffers, nested descriptions to
structs.  At most :data:`MAX_CANDIDATES` decodes are tried per section, so a
hostile stream or schema costs bounded time; what no candidate fits stays
opaque.

The schema is parsed once by :mod:`miglab.vmstate.schema` (the model every
schema user reads), the candidate layouts built by
:mod:`miglab.vmstate.schema_layouts`; this module tries them, each a decode on
the one walk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from miglab.errors import MiglabError
from miglab.visitors.qemufile import QEMUFileReader
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor
from miglab.vmstate.schema import Schema, SchemaSource, SchemaVmsd, load_schema, with_hints
from miglab.vmstate.schema_layouts import Choice, array_choices, build, walk_entry
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("MAX_CANDIDATES", "SchemaIndex")

MAX_CANDIDATES = 64  # decodes tried per section


class SchemaIndex:
    """A ``-dump-vmstate`` schema indexed by vmsd name, decoding sections by trial.

    Example:
        >>> idx = SchemaIndex.load("data/schema-7.2-pc-i440fx-2.2.json")
        >>> "mc146818rtc" in idx.names()
        True
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.machine = schema.machine
        # by vmsd name and by class name; one vmsd may serve several classes
        self._entries: dict[str, list[SchemaVmsd]] = {}
        for cls_name, vmsd in schema.devices.items():
            for name in dict.fromkeys((vmsd.name, cls_name)):
                known = self._entries.setdefault(name, [])
                if vmsd not in known:
                    known.append(vmsd)

    @classmethod
    def load(
        cls,
        schema: SchemaSource | SchemaIndex,
        *,
        hints: SchemaSource | SchemaIndex | None = None,
    ) -> SchemaIndex:
        """Index a schema: a path, its bytes, its parsed JSON or its :class:`Schema`.

        Args:
            schema: the ``-dump-vmstate`` output of the QEMU that wrote the
                stream (an index passes through unchanged, so ``load(...,
                schema=SchemaIndex.load(..., hints=...))`` works).
            hints: optionally a schema of another QEMU build that gives array
                lengths (``num``, QEMU >= 8.1).  Fields of ``schema`` without
                ``num`` take the ``num`` of the field with the same vmsd,
                name and element size there; the decode still has to end at
                the record boundary, so a wrong hint only costs a candidate.

        Raises:
            DescriptionError: not JSON, or not the ``-dump-vmstate`` shape.
            DescriptionLimitExceeded: larger than ``LIMITS.max_schema_bytes`` or
                nested deeper than ``LIMITS.max_depth`` (also a ``LimitExceeded``).
        """
        if isinstance(schema, SchemaIndex):
            return schema
        parsed = load_schema(schema)
        if hints is not None:
            other = hints.schema if isinstance(hints, SchemaIndex) else load_schema(hints)
            parsed = with_hints(parsed, other)
        return cls(parsed)

    def names(self) -> frozenset[str]:
        """Every vmsd and class name the schema describes."""
        return frozenset(self._entries)

    def lookup(self, idstr: str) -> list[SchemaVmsd]:
        """The schema descriptions a section idstr may follow (by vmsd name, then class name)."""
        tail = idstr.rsplit("/", 1)[-1]
        return list(self._entries.get(tail, ())) or list(self._entries.get(idstr, ()))

    def decode(
        self,
        r: QEMUFileReader,
        idstr: str,
        version_id: int,
        boundary_ok: Callable[[QEMUFileReader], bool],
    ) -> VMState | None:
        """Decode the section payload at ``r.pos`` with the first layout that fits.

        Returns the state with ``r.pos`` just past the payload, or None with
        ``r.pos`` unchanged when the schema has no entry or no candidate
        layout ends where ``boundary_ok`` accepts.
        """
        start = r.pos
        budget = MAX_CANDIDATES
        for sdesc in self.lookup(idstr):
            if not sdesc.minimum_version_id <= version_id <= sdesc.version_id:
                continue
            predicated = [p for p, f, _ in walk_entry(sdesc, version_id, (), True) if f.exists]
            for k in range(len(predicated) + 1):
                for absent in itertools.combinations(predicated, k):
                    if budget <= 0:
                        r.pos = start
                        return None
                    base = Choice(frozenset(absent))
                    budget -= 1
                    state = _try(sdesc, base, r, start, version_id, idstr, boundary_ok)
                    if state is not None:
                        return state
                    fits: list[tuple[Choice, VMState, int]] = []
                    for choice in array_choices(sdesc, base, r, start, version_id, boundary_ok):
                        if budget <= 0:
                            break
                        budget -= 1
                        state = _try(sdesc, choice, r, start, version_id, idstr, boundary_ok)
                        if state is not None:
                            fits.append((choice, state, r.pos))
                    chosen = _unambiguous(fits)
                    if chosen is not None:
                        r.pos = chosen[2]
                        return chosen[1]
                    if fits:  # several layouts fit equally well: keep the bytes opaque
                        r.pos = start
                        return None
        r.pos = start
        return None


def _unambiguous(
    fits: list[tuple[Choice, VMState, int]],
) -> tuple[Choice, VMState, int] | None:
    """The one fitting array layout, or the one a count field vouches for."""
    if len(fits) == 1:
        return fits[0]
    vouched = [f for f in fits if any(nf is not None for _, _, nf in f[0].counts)]
    return vouched[0] if len(vouched) == 1 else None


def _try(
    sd: SchemaVmsd,
    choice: Choice,
    r: QEMUFileReader,
    start: int,
    version: int,
    idstr: str,
    boundary_ok: Callable[[QEMUFileReader], bool],
) -> VMState | None:
    r.pos = start
    try:
        desc = build(sd, choice, version)
        state = visit_vmstate(QEMUFileInputVisitor(r), desc, None, version, idstr)
    except (MiglabError, RecursionError):
        r.pos = start
        return None
    if boundary_ok(r):
        return state
    r.pos = start
    return None
