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
# dotted names below dlink: "data", "evaluation.gap"; a subpackage's __init__ is the subpackage
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if p != PACKAGE / "__init__.py"
)


def _file(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _resolve(base: str, name: str | None) -> str | None:
    """The dlink module `from dlink.<base> import <name>` takes: the submodule if there is one."""
    for cand in (f"{base}.{name}".strip(".") if name else None, base):
        if cand and cand in MODULES:
            return cand
    return None


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(dlink module imported, names taken from it) for every import statement in `module`."""
    package = module.rsplit(".", 1)[0] if "." in module and not _file(module).name == "__init__.py" else ""
    out = []
    for node in ast.walk(ast.parse(_file(module).read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".", 1)[1], []) for a in node.names if a.name.startswith("dlink.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:  # relative to the module's own package
                base = ".".join(p for p in (package, node.module or "") if p)
            elif (node.module or "").split(".")[0] == "dlink":
                base = node.module.partition(".")[2]
            else:
                continue
            taken = {}
            for a in node.names:
                target = _resolve(base, a.name)
                if target and target != base:  # a submodule itself
                    out.append((target, []))
                else:
                    taken.setdefault(base, []).append(a.name)
            out += list(taken.items())
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
    assert (
        "encoders.base" in graph["encoders.laion"] and "data" in graph["experiment"]
    )  # function-level ones too
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


def test_the_science_never_imports_the_runner():
    """dlink.runner runs notebooks; no science module depends on it, so it can change alone."""
    graph = import_graph()
    assert {"runner.pipeline", "runner.progress", "runner.lab"} <= set(graph)
    assert "runner.progress" in graph["runner.pipeline"]  # the parser follows subpackage imports
    leaks = {m: sorted(t for t in ts if t.startswith("runner")) for m, ts in graph.items()}
    assert not {m: ts for m, ts in leaks.items() if ts and not m.startswith("runner")}


def test_audio_is_read_in_one_module_that_needs_no_dataset_code():
    graph = import_graph()
    assert graph["audio"] == set()  # numpy and soundfile only
    assert "audio" in graph["encoders.base"] and "data" not in graph["encoders.base"]


# The top level holds the infrastructure, the dataset and the glue; the science lives in subpackages
TOP_LEVEL = {
    "__main__", "_io", "arrays", "audio", "cache", "checks", "data", "device", "distributed", "experiment",
    "paths", "profiles", "sessions", "sounds", "studies",
}  # fmt: skip
SUBPACKAGES = {"bridges", "encoders", "captioning", "evaluation", "runner"}


def test_science_modules_live_in_subpackages():
    """A new module goes into the subpackage of its concern, not next to the infrastructure."""
    top = {m.split(".")[0] for m in MODULES}  # a folder of modules counts, with or without __init__
    assert top - SUBPACKAGES == TOP_LEVEL, (
        f"unexpected top-level modules: {sorted(top - SUBPACKAGES - TOP_LEVEL)}"
    )
    assert SUBPACKAGES <= top
    assert {p.parent.name for p in PACKAGE.glob("*/__init__.py")} == SUBPACKAGES


def test_subpackages_hold_no_code_in_their_init():
    """A subpackage's __init__ is its docstring: every name has one module path, and importing
    one module of a subpackage does not import its siblings."""
    for sub in sorted(SUBPACKAGES):
        body = ast.parse((PACKAGE / sub / "__init__.py").read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), (
            sub
        )
