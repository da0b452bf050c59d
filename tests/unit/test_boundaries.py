"""The engine stays pure: no Azure SDK and no `azure.functions` in its modules."""

from __future__ import annotations

import ast
from pathlib import Path

import swarm_core

ENGINE = Path(swarm_core.__file__).parent
ADAPTERS = ENGINE / "adapters"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_engine_modules_import_no_azure():
    engine_files = [p for p in ENGINE.rglob("*.py") if ADAPTERS not in p.parents]
    assert len(engine_files) > 10
    offenders = {
        str(p.relative_to(ENGINE)): sorted(m for m in imported_modules(p) if m.startswith("azure"))
        for p in engine_files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_function_app_entrypoints_import_azure_functions():
    for path in ENGINE.rglob("*.py"):
        assert "azure.functions" not in imported_modules(path), path
