"""The engine stays pure: no Azure SDK and no `azure.functions` in its modules. Only the
entrypoints import `azure.functions`; only adapters (and their wiring) import Azure SDKs."""

from __future__ import annotations

import ast
from pathlib import Path

import swarm_core

ROOT = Path(swarm_core.__file__).parent
OUTSIDE_ENGINE = {ROOT / "adapters", ROOT / "entrypoints"}
WIRING = {ROOT / "azure_wiring.py"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


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
