"""Imports point down the layers: store ← ingest, analytics ← dashboard ← server."""

import ast
from pathlib import Path

import tally

PACKAGE = Path(tally.__file__).parent
MAY_IMPORT = {
    "store": set(),
    "ingest": {"store"},
    "analytics": {"store"},
    "dashboard": {"analytics", "store"},
    "server": {"store", "ingest", "analytics", "dashboard", "migrations"},
    "migrations": {"store"},
}


def _tally_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        found |= {name.split(".")[1] for name in names if name.startswith("tally.") and name.count(".") >= 1}
    return found


def test_every_module_imports_only_lower_layers():
    offences = []
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0]
        if layer not in MAY_IMPORT:
            continue
        for imported in _tally_imports(path) - MAY_IMPORT[layer] - {layer}:
            offences.append(f"{path.relative_to(PACKAGE)} imports tally.{imported}")
    assert offences == []
