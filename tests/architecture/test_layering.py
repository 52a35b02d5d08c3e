"""The layering rules of DESIGN.md section 2, checked on the source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "ticketbridge"


def imported_modules(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(PACKAGE))] = names
    return found


def test_rules_import_only_the_stdlib_pydantic_and_themselves() -> None:
    allowed_roots = set(sys.stdlib_module_names) | {"pydantic", "__future__"}
    offenders = {
        path: sorted(
            name
            for name in names
            if name.split(".")[0] not in allowed_roots and not name.startswith("ticketbridge.rules")
        )
        for path, names in imported_modules(PACKAGE / "rules").items()
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}


def test_adapters_never_import_the_app() -> None:
    offenders = {
        path: sorted(n for n in names if n.startswith("ticketbridge.app"))
        for path, names in imported_modules(PACKAGE / "adapters").items()
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}


def test_importing_and_building_the_app_touches_nothing(tmp_path: Path) -> None:
    import subprocess

    # Import every module and build the app: no database file, no log handlers, no threads.
    code = (
        "import logging, threading, pkgutil, importlib, ticketbridge;"
        "[importlib.import_module(m.name) for m in "
        "pkgutil.walk_packages(ticketbridge.__path__, 'ticketbridge.')"
        " if '.migrations' not in m.name];"
        "from ticketbridge.app.http.app import create_app; create_app();"
        "print(len(logging.getLogger().handlers), threading.active_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.stdout.split() == ["0", "1"]
    assert list(tmp_path.iterdir()) == []
