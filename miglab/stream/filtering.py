"""A whole stream through marshal or unmarshal filters (:mod:`miglab.vmstate.filters`).

:func:`filter_stream` runs the filters on the state of every device section (a postcopy
PACKAGED blob's too) and returns a new :class:`~miglab.stream.model.Stream`; the one given is
left as it was.  The vmdesc entries of the sections a filter changed are rebuilt from their new
states (a filter may resize a buffer), so the stream still reads back.  The configuration block
is not a device and is not filtered.
"""

from __future__ import annotations

import dataclasses
import json

from miglab.stream.model import CommandRecord, Record, Section, Stream
from miglab.stream.vmdesc import refresh_vmdesc
from miglab.vmstate.filters import Filters
from miglab.vmstate.state import VMState

__all__ = ("filter_stream",)


def filter_stream(stream: Stream, filters: Filters, *, marshal: bool) -> Stream:
    """``stream`` with each device state through ``filters`` (``marshal`` or unmarshal ones).

    Raises:
        VisitorError: a filter's tree does not fit the section's description.
    """
    if not (filters.marshal if marshal else filters.unmarshal):
        return stream
    through = filters.marshal_state if marshal else filters.unmarshal_state
    changed: list[Section] = []

    def records(recs: list[Record]) -> list[Record]:
        out: list[Record] = []
        for rec in recs:
            if isinstance(rec, Section) and isinstance(rec.payload, VMState):
                state = through(rec.payload)
                if state is not rec.payload and state != rec.payload:
                    rec = dataclasses.replace(rec, payload=state)
                    changed.append(rec)
            elif isinstance(rec, CommandRecord) and rec.packaged is not None:
                rec = dataclasses.replace(rec, packaged=records(rec.packaged))
            out.append(rec)
        return out

    new = records(stream.records)
    if not changed:
        return stream
    vmdesc = json.loads(json.dumps(stream.vmdesc)) if stream.vmdesc is not None else None
    out = dataclasses.replace(stream, records=new, vmdesc=vmdesc)
    refresh_vmdesc(out, changed)
    return out
