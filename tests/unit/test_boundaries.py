"""The layout's rules, checked from the source: the engine stays pure (no Azure SDK, no
`azure.functions`); only the entrypoints import `azure.functions`; and `swarm_core` has no import
cycle, nor a function-local import of its own modules that could hide one."""

from __future__ import annotations

import ast
from pathlib import Path

import swarm_core

ROOT = Path(swarm_core.__file__).parent
OUTSIDE_ENGINE = {ROOT / "adapters", ROOT / "entrypoints"}
# Wiring and process glue: they import the adapters (never an Azure SDK themselves).
WIRING = {ROOT / "bootstrap.py", ROOT / "runtime.py"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """The swarm_core modules `path` imports when it is loaded (not under TYPE_CHECKING)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("swarm_core")}


def engine_files() -> list[Path]:
    return [
        p for p in ROOT.rglob("*.py") if not OUTSIDE_ENGINE & set(p.parents) and p not in WIRING
    ]


def test_engine_modules_import_no_azure():
    files = engine_files()
    assert len(files) > 10
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("azure"))
        for p in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_entrypoints_import_azure_functions():
    for path in ROOT.rglob("*.py"):
        if ROOT / "entrypoints" in path.parents:
            continue
        assert not any(m.startswith("azure.functions") for m in imported_modules(path)), path


def test_no_import_cycle_in_swarm_core():
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {
        name: {m for m in runtime_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A module's package is loaded before it: importing `a.b` runs `a/__init__.py`.
    for name in modules:
        for dep in list(graph[name]):
            parent = dep.rpartition(".")[0]
            if parent in modules and parent != name and not name.startswith(parent + "."):
                graph[name].add(parent)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_function_local_import_of_swarm_core():
    offenders = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "swarm_core"
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
    assert offenders == []
