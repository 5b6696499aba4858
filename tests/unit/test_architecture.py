"""The house: the folder tree is the pipeline, and every import points down it.

Walks the imports of every module under netdoctor/ (top-level, function-level and TYPE_CHECKING
alike, read with `ast`, nothing imported) and fails on an import cycle, on an import that points
up the pipeline, and on a third-party boundary crossed (kubernetes outside the cluster package,
scapy outside the pcap module).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "netdoctor"

# The rooms of the house, lowest first. A module may import its own room and any room below it.
# The most specific prefix names a module's room.
ROOMS: tuple[tuple[str, ...], ...] = (
    ("netdoctor", "netdoctor.__init__", "netdoctor.exitcodes", "netdoctor.environment", "netdoctor.labels",
     "netdoctor.schemas"),  # the JSON documents and their schemas
    ("netdoctor.errors", "netdoctor.observations"),
    ("netdoctor.cluster", "netdoctor.manifests"),  # the only door to the API; YAML input files
    ("netdoctor.policy",),  # the NetworkPolicy engine, used by resolve and its own commands
    ("netdoctor.model",),  # the pipeline's vocabulary
    ("netdoctor.catalog",),  # checks/ as data
    ("netdoctor.check.target", "netdoctor.check.resolve", "netdoctor.check.plan", "netdoctor.check"),
    ("netdoctor.probe",),
    ("netdoctor.judge",),
    ("netdoctor.report",),
    ("netdoctor.check.command", "netdoctor.check.many", "netdoctor.check.smoke_command", "netdoctor.completions"),  # runs the whole pipeline
    ("netdoctor.lab",),  # a cluster of its own: reached by netdoctor only through the API
    ("netdoctor.cli", "netdoctor.__main__"),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every netdoctor module `name` imports; `from pkg import sub` counts `pkg.sub` when it is one."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, is_package, node)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return {_nearest_module(m) for m in found if m == "netdoctor" or m.startswith("netdoctor.")} - {name}


def _absolute(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _nearest_module(dotted: str) -> str:
    while dotted not in MODULES and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def _third_party(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _room(module: str) -> int:
    best, best_len = None, -1
    for rank, prefixes in enumerate(ROOMS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    assert best is not None, f"{module} is in no room of the house: add it to ROOMS"
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_whole_package():
    assert len(MODULES) > 60
    assert "netdoctor.check.command" in GRAPH["netdoctor.cli"]
    assert "netdoctor.probe.pcap" in GRAPH["netdoctor.check.command"]  # a function-level import counts


def test_no_module_imports_a_module_that_imports_it_back():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_every_import_points_down_the_pipeline():
    upward = [f"{m} (room {_room(m)}) imports {t} (room {_room(t)})"
              for m, targets in sorted(GRAPH.items()) for t in sorted(targets) if _room(t) > _room(m)]
    assert upward == []


def test_the_tree_shows_the_stages():
    for stage in ("cluster", "check", "probe", "judge", "report", "policy", "lab"):
        init = PACKAGE / stage / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "call" in doc.lower() or "register" in (doc or "").lower(), \
            f"{stage}/__init__.py must say who calls it and why"
    loose = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 12, f"too many loose modules at the top of netdoctor/: {loose}"


@pytest.mark.parametrize("library, allowed", [
    ("kubernetes", ("netdoctor/cluster/",)),
    ("scapy", ("netdoctor/probe/pcap.py",)),
])
def test_third_party_boundaries(library, allowed):
    offenders = [str(path.relative_to(PACKAGE.parent)) for path in MODULES.values()
                 if library in _third_party(path)
                 and not str(path.relative_to(PACKAGE.parent)).startswith(allowed)]
    assert offenders == []
