"""The package's layers import downward only, and no modules import each other in a circle.

DESIGN.md fixes the order: errors/findings/limits/files/wire/knowledge → visitors → vmstate → devices →
stream → containers → encoders | compat → live → analysis | widgets | fleet →
cli.  Every ``import miglab...`` in every module counts, also one hidden inside
a function.  The few upward imports the code still has are listed in
``KNOWN`` with why; the test fails on any new one, and on a listed one that is
gone (so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "miglab"

# Lowest first; a module may import its own layer and the ones below.
LAYERS: tuple[tuple[str, ...], ...] = (
    # What every layer may use: the error tree, the findings checks report, the safety limits,
    # the wire constants, the knowledge files and the packages' lazy exports.
    (
        "miglab.errors",
        "miglab.findings",
        "miglab.limits",
        "miglab.files",
        "miglab.wire",
        "miglab.knowledge",
        "miglab.lazy",
    ),
    ("miglab.visitors",),
    ("miglab.vmstate",),
    ("miglab.devices",),
    ("miglab.stream",),
    ("miglab.containers",),
    ("miglab.encoders", "miglab.compat", "miglab.capabilities"),
    ("miglab.live",),
    ("miglab.analysis", "miglab.widgets", "miglab.fleet", "miglab.qemu"),
    # The management side of a live move drives real QEMUs through capability endpoints.
    (
        "miglab.cli",
        "miglab.capabilities_endpoints",
        "miglab.live.migrate",
        "miglab.__main__",
        "miglab",
    ),
)

# (importer, imported): why it is still there.  Each is also a cycle edge.
KNOWN: dict[tuple[str, str], str] = {}


# Same-layer imports that close a cycle: (importer, imported): why.
KNOWN_CYCLES: dict[tuple[str, str], str] = {}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every miglab module -> the miglab modules it imports (anywhere in its body)."""
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = _module(path)
        found = out.setdefault(mod, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found.update(n for n in names if n == "miglab" or n.startswith("miglab."))
    return out


def _rank(module: str) -> int:
    best, rank = -1, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def _upward() -> set[tuple[str, str]]:
    return {
        (mod, dep) for mod, deps in _imports().items() for dep in deps if _rank(dep) > _rank(mod)
    }


def test_every_module_has_a_layer() -> None:
    for mod in _imports():
        _rank(mod)


def test_layers_import_downward_only() -> None:
    upward = _upward()
    new = sorted(upward - KNOWN.keys())
    assert not new, f"upward imports (import a lower layer instead): {new}"
    gone = sorted(KNOWN.keys() - upward)
    assert not gone, f"fixed, remove from KNOWN: {gone}"


def test_no_import_cycles_beyond_the_known() -> None:
    imports = _imports()
    # A package's __init__ re-exporting its own modules is no cycle of concern.
    everything = {
        m: {d for d in deps if d != m and m != d.rsplit(".", 1)[0]} for m, deps in imports.items()
    }
    # A listed edge is gone when it is no longer imported or no longer closes a cycle.
    gone = sorted(
        (a, b)
        for a, b in KNOWN_CYCLES
        if b not in everything.get(a, ()) or a not in _reachable(everything, b)
    )
    assert not gone, f"fixed, remove from KNOWN_CYCLES: {gone}"
    skip = KNOWN.keys() | KNOWN_CYCLES.keys()
    graph = {m: {d for d in deps if (m, d) not in skip} for m, deps in everything.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d) :], d]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
