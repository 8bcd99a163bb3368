"""The code's shape, computed from the source: no import cycle between the project's
modules (lazy imports inside functions and imports for type checking only count too),
and no function in suite/ over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("suite", "leaderboard")
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in it (module level, inside functions, or
    under `if TYPE_CHECKING:`)."""
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    return _imports_in(path.read_text(), own, package, modules)


def _imports_in(source: str, own: str, package: str, modules: set[str]) -> set[str]:
    # An import for type checking only counts: a cycle of annotations is still two
    # modules that cannot be understood (or moved) one without the other.
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != own:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, if there is any (iterative depth-first search)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Modules folded into their sub-package (suite.store, suite.train, ...)."""

    def pkg(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        out.setdefault(pkg(module), set()).update(pkg(d) for d in deps if pkg(d) != pkg(module))
    return out


def test_no_module_import_cycle():
    assert _cycle(import_graph()) is None, " -> ".join(_cycle(import_graph()) or [])


def test_no_package_import_cycle():
    graph = _package_graph(import_graph())
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_type_checking_and_lazy_imports_count():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from suite.b import B\n"
        "def f():\n"
        "    from .c import C\n"
    )
    modules = {"suite.a", "suite.b", "suite.c"}
    assert _imports_in(source, "suite.a", "suite", modules) == {"suite.b", "suite.c"}
    # Such an import closes a cycle as any other does (answers.py <-> types.py was one).
    graph = {"suite.a": _imports_in(source, "suite.a", "suite", modules), "suite.b": {"suite.a"}}
    assert _cycle(graph) == ["suite.a", "suite.b", "suite.a"]


def test_no_function_in_suite_is_over_60_lines():
    long = []
    for path in (ROOT / "suite").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert not long, long
