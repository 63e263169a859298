"""Transforms registered per device and version, and the planner that chains them.

A transform is a function ``fn(edit)`` that changes device states through an
:class:`~miglab.compat.edit.Edit`, registered for one device (its vmsd name, or ``"*"`` for
a rule that applies to every device) and one step between two versions::

    registry = Registry()

    @registry.register("e1000", src="1.0", dst="1.1")
    def _(edit):
        edit.rename("e1000", "mit_ide", "mit_irq_level")

Versions are plain strings: a device's own version, a QEMU build (``"7.2"``) for what a
build's code writes, or a machine generation (``"machine:7.2"``, :data:`MACHINE_PREFIX`) for
what a machine type's compat properties make devices do, whichever build runs it.
:meth:`Registry.plan` finds the shortest chain of registered steps from one version to
another (both directions are just edges) and can be printed before it runs; running a plan returns the new states and the :class:`ChangeReport` of every step.
A registry is a value: there is no global one (:func:`miglab.compat.defaults.default_registry`
builds the one miglab ships).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from miglab.compat.edit import Edit
from miglab.compat.report import ChangeReport
from miglab.errors import CompatError
from miglab.vmstate.state import VMState

__all__ = (
    "ANY_DEVICE",
    "MACHINE_PREFIX",
    "Plan",
    "Registry",
    "Transform",
    "TransformFn",
)

TransformFn = Callable[[Edit], None]
ANY_DEVICE = "*"
#: Versions naming a machine generation start with this (``machine:10.0``).
MACHINE_PREFIX = "machine:"


@dataclass(frozen=True, slots=True)
class Transform:
    """One registered step: ``device`` from version ``src`` to ``dst``.

    Attributes:
        device: vmsd name the step applies to (``"*"``: every device).
        src: version the step reads.
        dst: version the step writes.
        fn: the function doing the edits.
        description: what the step does (the function's docstring by default).
    """

    device: str
    src: str
    dst: str
    fn: TransformFn = field(repr=False, compare=False)
    description: str = ""

    def __call__(self, states: Sequence[VMState]) -> tuple[list[VMState], ChangeReport]:
        """Apply to ``states``, which stay as they are; returns the new states and what changed.

        The step's edit copies on write (:class:`~miglab.compat.edit.Edit`): only the device
        states it changes are copied, each along the path of the change, so a step that
        changes nothing costs nothing and the new states share the unchanged parts.
        """
        edit = Edit(list(states), copy_on_write=True)
        self.fn(edit)
        return edit.states, edit.report

    def __str__(self) -> str:
        return f"{self.device}: {self.src} -> {self.dst}  {self.description}".rstrip()


@dataclass(frozen=True, slots=True)
class Plan:
    """A chain of steps taking ``device`` from ``src`` to ``dst`` (empty when nothing to do)."""

    device: str
    src: str
    dst: str
    steps: tuple[Transform, ...]

    def run(self, states: Sequence[VMState]) -> tuple[list[VMState], ChangeReport]:
        """Apply every step in order; the report lists the changes of all steps."""
        out, report = list(states), ChangeReport()
        for step in self.steps:
            out, more = step(out)
            report += more
        return out, report

    def __str__(self) -> str:
        head = f"plan {self.device}: {self.src} -> {self.dst}"
        if not self.steps:
            return head + " (no steps)"
        return "\n".join([head, *(f"  {i + 1}. {s}" for i, s in enumerate(self.steps))])


class Registry:
    """Registered transforms, by device and step."""

    def __init__(self) -> None:
        self._steps: list[Transform] = []
        self._chains: list[tuple[str, ...]] = []
        #: Plans made so far, by (device, src, dst); emptied when a step or chain is added.
        self._plans: dict[tuple[str, str, str], Plan] = {}

    def add_chain(self, versions: Sequence[str]) -> None:
        """Declare ``versions`` an ordered chain (QEMU builds, machine generations): a plan
        between two of them walks every hop in between, running each hop's steps, so a step
        registered between two neighbours also runs on a longer way (11.1 -> 5.2 runs the
        10.0 -> 7.2 step)."""
        self._chains.append(tuple(versions))
        self._plans.clear()

    def register(
        self, device: str, *, src: str, dst: str, description: str = ""
    ) -> Callable[[TransformFn], TransformFn]:
        """Decorator: register ``fn`` as the step ``src -> dst`` of ``device``."""

        def deco(fn: TransformFn) -> TransformFn:
            doc = description or (fn.__doc__ or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._steps.append(Transform(device, src, dst, fn, text))
            self._plans.clear()
            return fn

        return deco

    def add(self, transform: Transform) -> None:
        """Register a ready-made :class:`Transform`."""
        self._steps.append(transform)
        self._plans.clear()

    @property
    def transforms(self) -> tuple[Transform, ...]:
        """Every registered step, in registration order."""
        return tuple(self._steps)

    def plan(self, device: str, src: str, dst: str) -> Plan:
        """The shortest chain of steps for ``device`` from ``src`` to ``dst``.

        Steps registered for ``"*"`` run on every device, after the device's own steps of the
        same edge.  A device with no steps of its own, or none touching ``src`` or ``dst``
        (its steps are between other versions, e.g. machine generations while ``src`` and
        ``dst`` are QEMU builds), gets an empty plan: its state is the same in both.

        Made once per device and way (a conversion asks for each section's plan, while the
        guest is stopped when it is the proxy's).

        Raises:
            CompatError: steps exist but none chain from ``src`` to ``dst``.
        """
        key = (device, src, dst)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(device, src, dst)
        return plan

    def _plan(self, device: str, src: str, dst: str) -> Plan:
        mine = [t for t in self._steps if t.device in (device, ANY_DEVICE)]
        if src == dst or not mine:
            return Plan(device, src, dst, ())
        chain = next((c for c in self._chains if src in c and dst in c), None)
        if chain is not None:
            a, b = chain.index(src), chain.index(dst)
            way = chain[a : b + 1] if a < b else chain[b : a + 1][::-1]
            return Plan(device, src, dst, self._hops(mine, device, way))
        edges: dict[str, list[str]] = {}
        for t in mine:
            edges.setdefault(t.src, []).append(t.dst)
        prev: dict[str, str] = {src: src}
        queue = deque([src])
        while queue:
            v = queue.popleft()
            for w in edges.get(v, []):
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
        if dst not in prev:
            known = sorted({t.src for t in mine} | {t.dst for t in mine})
            if not any(t.device == device for t in mine) or not {src, dst} & set(known):
                return Plan(device, src, dst, ())
            raise CompatError(
                f"no chain of transforms from {src} to {dst} (versions known: {known})", path=device
            )
        hops = [dst]
        while hops[-1] != src:
            hops.append(prev[hops[-1]])
        hops.reverse()
        return Plan(device, src, dst, self._hops(mine, device, hops))

    @staticmethod
    def _hops(mine: list[Transform], device: str, way: Sequence[str]) -> tuple[Transform, ...]:
        """The steps of each hop along ``way``: the device's own, then the ``"*"`` ones."""
        steps: list[Transform] = []
        for a, b in itertools.pairwise(way):
            steps += [t for t in mine if t.src == a and t.dst == b and t.device == device]
            steps += [t for t in mine if t.src == a and t.dst == b and t.device == ANY_DEVICE]
        return tuple(steps)
