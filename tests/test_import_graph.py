"""The packages' import graph, read from the source: layers point one way, and nothing loops.

Every module of avatar/, lipsync/, voices/ and webui/ is parsed (not imported), with the imports
inside functions too, since that is how heavy engines are loaded late. Modules are grouped into
units: each subpackage of avatar (avatar.core, avatar.engines, avatar.asr, ...) and the top-level
packages lipsync, voices, webui (and tests, bench as targets). The root files avatar/__init__.py
and avatar/__main__.py are the package's face and entry point and are left out.

Imports under `if TYPE_CHECKING:` count too: a type hint that names another layer is still a
dependency of the reader's understanding. The stage contracts live in avatar.core.protocols for
that reason, so every layer may name them.

The rules:
- no cycles between units;
- lipsync and voices (engine packages) import only avatar.core: the engine layer finds their
  folders and files and passes paths in;
- avatar.core imports nothing else of the toolkit;
- no runtime package imports tests or bench.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("avatar", "lipsync", "voices", "webui")
TOOLKIT = (*RUNTIME_PACKAGES, "tests", "bench")
ROOT_FILES = ("avatar", "avatar.__main__")  # avatar/__init__.py, avatar/__main__.py
ENGINE_PACKAGES = ("lipsync", "voices")
CORE = "avatar.core"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "lipsync.landmarks_fan"
    line: int
    target: str  # the imported module or name, e.g. "avatar.engines.registry"

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def unit(module: str) -> str:
    """avatar.<subpackage> for avatar's modules, else the top-level package."""
    parts = module.split(".")
    if parts[0] == "avatar":
        if len(parts) > 1 and (ROOT / "avatar" / parts[1]).is_dir():
            return f"avatar.{parts[1]}"
        return "avatar"
    return parts[0]


class _Imports(ast.NodeVisitor):
    """Every import a module runs (at import time or inside a function), with its line."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[Import] = []

    def _add(self, node: ast.AST, target: str) -> None:
        if target.split(".")[0] in TOOLKIT:
            self.found.append(Import(self.module, node.lineno, target))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: resolved against this module's package
            anchor = self.package.split(".")[: len(self.package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:  # `from avatar import engines` names the subpackage
            self._add(node, f"{base}.{alias.name}" if alias.name != "*" else base)

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._add(node, first.value)
        self.generic_visit(node)


@cache
def all_imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for top in RUNTIME_PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            module = ".".join(parts[:-1] if is_package else parts)
            if module in ROOT_FILES:
                continue
            visitor = _Imports(module, is_package)
            visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
            found.extend(visitor.found)
    return tuple(found)


@cache
def edges() -> dict[tuple[str, str], tuple[Import, ...]]:
    """(from unit, to unit) -> the imports that make the edge."""
    by_edge: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for found in all_imports():
        source, target = unit(found.module), unit(found.target)
        if source != target and target != "avatar":
            by_edge[(source, target)].append(found)
    return {edge: tuple(imports) for edge, imports in by_edge.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of units that reach each other (size > 1 = a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [group for group in groups if len(group) > 1]


def _explain(imports: list[Import] | tuple[Import, ...], limit: int = 3) -> str:
    shown = "; ".join(str(found) for found in imports[:limit])
    return shown + (f"; and {len(imports) - limit} more" if len(imports) > limit else "")


def test_the_graph_is_read_from_the_source():
    """Not vacuous: the parser sees top-level, function-local and `from x import y` imports."""
    graph = edges()
    assert ("avatar.render", "avatar.engines") in graph  # avatar/render/job.py, at module level
    assert ("avatar.engines", "voices") in graph  # voices are imported inside functions only
    assert ("webui", "avatar.library") in graph
    assert len(all_imports()) > 200


def test_no_import_cycles_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges():
        graph[source].add(target)
    problems = []
    for group in strongly_connected(graph):
        inside = [
            f"{source} -> {target}: {imports[0]}"
            + (f" (and {len(imports) - 1} more)" if len(imports) > 1 else "")
            for (source, target), imports in sorted(edges().items())
            if source in group and target in group
        ]
        problems.append(f"import cycle between {', '.join(group)}: " + "; ".join(inside))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", ENGINE_PACKAGES)
def test_engine_packages_import_only_core(package):
    wrong = [
        found
        for (source, target), imports in sorted(edges().items())
        if source == package and target != CORE
        for found in imports
    ]
    assert not wrong, (
        f"{package} may import only {CORE} of the toolkit (the engine layer passes paths in): "
        + _explain(wrong, limit=10)
    )


def test_core_imports_nothing_else_of_the_toolkit():
    wrong = [
        found for (source, _target), imports in sorted(edges().items()) if source == CORE for found in imports
    ]
    assert not wrong, f"{CORE} must import nothing else of the toolkit: " + _explain(wrong, limit=10)


def test_runtime_packages_never_import_tests_or_bench():
    wrong = [
        found
        for (_source, target), imports in sorted(edges().items())
        if target in ("tests", "bench")
        for found in imports
    ]
    assert not wrong, "runtime code must not import test or benchmark code: " + _explain(wrong, limit=10)


def test_the_checks_catch_what_they_look_for():
    """The rules' own machinery, on a made-up graph and made-up source."""
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
    source = (
        "from typing import TYPE_CHECKING\n"
        "import avatar.engines.registry\n"
        "if TYPE_CHECKING:\n    from avatar.core.protocols import SpeechSynthesizer\n"
        "def late():\n    from tests.support import fakes\n"
        "from . import sibling\n"
    )
    visitor = _Imports("lipsync.example", is_package=False)
    visitor.visit(ast.parse(source))
    assert [(found.line, found.target) for found in visitor.found] == [
        (2, "avatar.engines.registry"),
        (4, "avatar.core.protocols.SpeechSynthesizer"),  # type-only imports count
        (6, "tests.support.fakes"),
        (7, "lipsync.sibling"),
    ]
