"""The shape of the package (issue 13): no import circle, click at the edge only, the loss
package free of I/O and of every heavy import, and no source file past ~600 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ce_cli"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The modules (of any package) that ``path`` imports, lazily or not."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module(p): p for p in SOURCES}


def _graph() -> dict[str, set[str]]:
    """Module -> the ce_cli modules it imports (a package's ``__init__`` counts as the
    package; importing ``a.b`` imports ``a`` first)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for target in _imports(path):
            # a submodule importing its own package (``from . import x``) is how Python
            # imports any submodule: not a circle
            if target in MODULES and target != name and not name.startswith(target + "."):
                deps.add(target)
        graph[name] = deps
    return graph


def test_no_import_circle_inside_ce_cli():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_click_is_imported_by_the_command_line_alone():
    users = sorted(_module(p) for p in SOURCES
                   if any(m == "click" or m.startswith("click.") for m in _imports(p)))
    assert users == ["ce_cli.cli"]


def test_the_loss_package_imports_numpy_and_nothing_heavy():
    allowed_outside = {"numpy", "ce_cli.errors", "ce_cli.names"}
    for path in (PACKAGE / "loss").glob("*.py"):
        for target in _imports(path):
            top = target.split(".")[0]
            if top == "ce_cli":
                assert any(target == a or target.startswith(a + ".")
                           for a in ("ce_cli.loss", *allowed_outside)), (path.name, target)
            else:  # numpy and the standard library's non-I/O modules
                assert top not in {"click", "rich", "pyarrow", "dask", "distributed", "h5py",
                                   "torch", "pandas", "io", "pathlib", "glob", "tempfile",
                                   "shutil", "zipfile", "json", "csv"}, (path.name, target)


def test_no_source_file_is_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in SOURCES
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long


def test_importing_the_package_and_its_command_line_stays_light():
    code = ("import sys, ce_cli, ce_cli.cli; "
            "print(sorted(m for m in ('numpy', 'pyarrow', 'rich', 'dask') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
