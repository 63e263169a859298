"""What a visitor sees of a compiled run or plan: the two shapes, as Protocols.

The walker (:func:`miglab.vmstate.walk.visit_vmstate`) hands a visitor that
``takes_runs`` or ``takes_plans`` (:mod:`miglab.visitors.base`) the runs and
plans :mod:`miglab.vmstate.layout` compiles; the visitors may not import that
higher layer, so they name its classes by these shapes.  They are for the type
checker: the visitors import this module under ``TYPE_CHECKING`` only, so that
reading a stream imports no :mod:`typing` (start-up, issue #14).  How a run's
items become values and what a plan's steps are is told by the constants
beside the visitor contract (``RUN_SCALAR``..., ``PLAN_RUN``...).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ("FieldRun", "StructPlan")


class FieldRun(Protocol):
    """What a visitor sees of a compiled run (:class:`miglab.vmstate.layout.Run`).

    Consecutive fixed-size fields: ``names`` in wire order, their bytes one
    big-endian ``struct``; ``fields`` are the description fields, ``sizes``
    their wire sizes and ``offsets`` within the run; ``take(fields)`` gives
    their values from a field dict; ``slots``, ``bools``, ``types``,
    ``sized`` and ``plain`` say how the unpacked items become values (see
    the class).
    """

    @property
    def fields(self) -> tuple[Any, ...]: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def struct(self) -> Any: ...
    @property
    def plain(self) -> bool: ...
    @property
    def slots(self) -> tuple[tuple[str, int, int, int], ...]: ...
    @property
    def bools(self) -> tuple[int, ...]: ...
    @property
    def types(self) -> tuple[type, ...]: ...
    @property
    def sized(self) -> tuple[tuple[int, int], ...]: ...
    @property
    def sizes(self) -> tuple[int, ...]: ...
    @property
    def offsets(self) -> tuple[int, ...]: ...
    @property
    def take(self) -> Any: ...
    @property
    def lists(self) -> tuple[int, ...]: ...


class StructPlan(Protocol):
    """What a visitor sees of a compiled struct (:class:`miglab.vmstate.layout.Plan`).

    A description at one version whose fields are all runs, nested structs
    and fixed-length arrays of structs (each compiled the same way), and whose
    subsections compile too.  ``steps`` are ``(PLAN_RUN, run, None, 0)``,
    ``(PLAN_STRUCT, name, plan, 0)`` or ``(PLAN_STRUCTS, name, plan, count)``
    in wire order; ``subsections`` ``(name, plan)`` in the description's order;
    ``members`` the number of field members (a struct node without its
    subsections); ``depth`` how many member-path levels the plan spans below
    itself; ``run`` the one run that is the whole struct, if it is one;
    ``make(fields, subsections)`` the state the walker would build.
    """

    @property
    def version(self) -> int: ...
    @property
    def steps(self) -> tuple[tuple[int, Any, Any, int], ...]: ...
    @property
    def subsections(self) -> tuple[tuple[str, Any], ...]: ...
    @property
    def members(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def run(self) -> FieldRun | None: ...
    @property
    def make(self) -> Any: ...
