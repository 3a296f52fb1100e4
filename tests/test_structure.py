"""The package's shape: its modules import each other without a cycle, and share only public names.

Every `import` counts, at module level and inside functions alike (a function-level import is
still a dependency, only a later one), so the layers data -> encoders -> bridges -> gap analysis /
captioning -> pipeline hold however an import is written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dlink

PACKAGE = Path(dlink.__file__).resolve().parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(dlink module imported, names taken from it) for every import statement in `module`."""
    out = []
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[1], []) for a in node.names if a.name.startswith("dlink.")]
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 1 and node.module:  # from .x import y
                out.append((parts[0], [a.name for a in node.names]))
            elif node.level == 1 or parts == ["dlink"]:  # from . import x / from dlink import x
                out += [(a.name, []) for a in node.names]
            elif parts[0] == "dlink":  # from dlink.x import y
                out.append((parts[1], [a.name for a in node.names]))
    return [(m, names) for m, names in out if m in MODULES and m != module]


def import_graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(m)} for m in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return path[path.index(t) :] + [t]
            if t not in state and (found := visit(t, path + [t])):
                return found
        state[m] = 2
        return None

    for m in graph:
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert sum(map(len, graph.values())) > 30  # the parser sees the package's imports
    assert "encoder_base" in graph["laion"] and "data" in graph["experiment"]  # function-level ones too
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_modules_share_only_public_names():
    private = [
        f"{m} imports {t}.{n}"
        for m in MODULES
        for t, names in _imports(m)
        for n in names
        if n.startswith("_")
    ]
    assert not private, private


def test_public_names_resolve():
    for name in dlink.__dir__():
        if not name.startswith("_") and name not in ("annotations", "importlib"):
            assert getattr(dlink, name) is not None, name
