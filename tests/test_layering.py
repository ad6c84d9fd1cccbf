"""Imports point down the layers: store ← ingest, analytics ← exports ← web ← dashboard ← server."""

import ast
from pathlib import Path

import tally

PACKAGE = Path(tally.__file__).parent
MAY_IMPORT = {
    "store": set(),
    "ingest": {"store"},
    "analytics": {"store"},
    "exports": {"store", "analytics"},
    "web": {"store", "ingest", "analytics", "exports"},
    "dashboard": {"web", "exports", "analytics", "store"},
    "server": {"store", "ingest", "analytics", "exports", "web", "dashboard", "migrations"},
    "migrations": {"store"},
}


def _absolute(module: str | None, level: int, path: Path) -> str:
    """The dotted name a (possibly relative) `from … import` refers to, seen from the module at `path`."""
    if level == 0:
        return module or ""
    package = ["tally", *path.relative_to(PACKAGE).parent.parts]
    base = package[: len(package) - (level - 1)] if level - 1 < len(package) else []
    return ".".join([*base, *([module] if module else [])])


def tally_imports(source: str, path: Path) -> set[str]:
    """The top-level packages of tally that the module imports, in every import form: `import tally.x`,
    `from tally.x import y`, `from tally import x`, and relative imports (`from . import y`, `from ..x import y`)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, path)
            # `from tally import ingest` names the package in the imported names, not in the module
            names = [f"{module}.{alias.name}" for alias in node.names] if module == "tally" else [module]
        else:
            continue
        found |= {name.split(".")[1] for name in names if name.startswith("tally.")}
    return found


def test_every_module_imports_only_lower_layers():
    offences = []
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0]
        if layer not in MAY_IMPORT:
            continue
        for imported in tally_imports(path.read_text(), path) - MAY_IMPORT[layer] - {layer}:
            offences.append(f"{path.relative_to(PACKAGE)} imports tally.{imported}")
    assert offences == []


def test_every_import_form_is_seen():
    """The check itself: each form of an upward import from a module in store/ is caught, a sibling import is not."""
    probe = PACKAGE / "store" / "probe.py"
    forms = ["import tally.ingest.wire", "from tally.ingest import wire", "from tally import ingest",
             "from ..ingest import wire", "from .. import ingest", "from ..ingest.wire import TrackPayload",
             "import tally.ingest.wire as w", "from tally import store, ingest"]
    for form in forms:
        assert "ingest" in tally_imports(form, probe), form
    assert tally_imports("from . import engine\nfrom .engine import build_engine\nimport json", probe) == {"store"}
