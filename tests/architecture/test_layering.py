"""The layering on the source: what each layer may import and call (docs/architecture.md).

- ``rules/`` is pure: the standard library's modules without I/O, pydantic and itself; no clock
  reads (``datetime.now()``, ``date.today()``), no ``open``/``print``/``input``.
- ``adapters/`` never imports ``app/``.
- One module touches SQLAlchemy's private API (the compiled fast path on the driver).
- Importing every module and building the app does no work: no files, handlers or threads.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "ticketbridge"

# The one module allowed to touch SQLAlchemy's private API: the webhook path's statements
# compiled once and run on the driver's cursor.
PRIVATE_API_MODULE = "adapters/store/compiled.py"

# Standard-library modules that do I/O, read a clock or draw randomness: not for rules/.
IMPURE_STDLIB = frozenset(
    {
        "asyncio", "concurrent", "ftplib", "glob", "http", "io", "logging", "mmap",
        "multiprocessing", "os", "pathlib", "random", "secrets", "select", "selectors",
        "shutil", "signal", "smtplib", "socket", "sqlite3", "ssl", "subprocess", "sys",
        "tempfile", "threading", "time", "urllib", "uuid",
    }
)  # fmt: skip
CLOCK_READS = frozenset({"now", "utcnow", "today"})
IO_BUILTINS = frozenset({"open", "print", "input"})

# Underscored names that are public API: Row's (the underscore keeps them apart from column
# names) and named tuples'.
PUBLIC_UNDERSCORED = frozenset(
    {"_mapping", "_asdict", "_fields", "_t", "_tuple", "_replace", "_make", "_field_defaults"}
)
# Private names SQLAlchemy happens to define too, read here on another library's objects:
# Starlette's ``State._state`` (the webhook path's shortcut past ``State.__getattr__``).
OTHER_LIBRARIES = frozenset({"_state"})


def modules(folder: Path | None = None) -> Iterator[tuple[str, ast.Module]]:
    """Each module under ``folder`` (the package) as (path relative to the package, tree)."""
    for path in sorted((folder or PACKAGE).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        yield path.relative_to(PACKAGE).as_posix(), tree


def _absolute(module: str | None, level: int, path: str) -> str:
    """The absolute name of an import written in ``path``, relative ones resolved."""
    if level == 0:
        return module or ""
    package = ["ticketbridge", *path.split("/")[:-1]]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imported(path: str, tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(_absolute(node.module, node.level, path))
    return names


def test_rules_import_only_the_pure_stdlib_pydantic_and_themselves() -> None:
    allowed = (set(sys.stdlib_module_names) - IMPURE_STDLIB) | {"pydantic", "__future__"}
    offenders = {
        path: sorted(
            name
            for name in imported(path, tree)
            if name.split(".")[0] not in allowed
            and name != "ticketbridge.rules"
            and not name.startswith("ticketbridge.rules.")
        )
        for path, tree in modules(PACKAGE / "rules")
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}


def test_rules_read_no_clock_and_do_no_io() -> None:
    offenders: dict[str, list[str]] = {}
    for path, tree in modules(PACKAGE / "rules"):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_READS:
                offenders.setdefault(path, []).append(f"l.{node.lineno}: .{func.attr}()")
            elif isinstance(func, ast.Name) and func.id in IO_BUILTINS:
                offenders.setdefault(path, []).append(f"l.{node.lineno}: {func.id}()")
    assert offenders == {}


def test_adapters_never_import_the_app() -> None:
    offenders = {
        path: sorted(
            n
            for n in imported(path, tree)
            if n == "ticketbridge.app" or n.startswith("ticketbridge.app.")
        )
        for path, tree in modules(PACKAGE / "adapters")
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}


# --- SQLAlchemy's private API ----------------------------------------------------------------

_DEFINED = re.compile(
    r"""(?:\bdef\s+|\bclass\s+|\b(?:self|cls)\.|^\s*|["'])(_[A-Za-z0-9]\w*)\b""", re.MULTILINE
)


@functools.cache
def sqlalchemy_private_names() -> frozenset[str]:
    """Every single-underscore name SQLAlchemy defines (functions, classes, attributes, slots)."""
    names: set[str] = set()
    for path in Path(sqlalchemy.__file__).parent.rglob("*.py"):
        names.update(_DEFINED.findall(path.read_text(encoding="utf-8")))
    return frozenset(names)


def _defined_here(trees: list[ast.Module]) -> set[str]:
    """The private names the project defines itself (its own attributes are not SQLAlchemy's)."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)  # __slots__, getattr(obj, "_name")
    return {name for name in names if name.startswith("_")}


def private_sqlalchemy_uses(parsed: list[tuple[str, ast.Module]]) -> dict[str, list[str]]:
    """Per module, the SQLAlchemy private names it imports or reads (``module: [l.N: name]``)."""
    ours = _defined_here([tree for _, tree in parsed])
    theirs = sqlalchemy_private_names() - ours - PUBLIC_UNDERSCORED - OTHER_LIBRARIES
    found: dict[str, list[str]] = {}
    for path, tree in parsed:
        uses: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                for alias in node.names:
                    full = f"{module}.{alias.name}" if module else alias.name
                    parts = full.split(".")
                    if parts[0] == "sqlalchemy" and any(
                        part.startswith("_") and not part.startswith("__") for part in parts
                    ):
                        uses.append(f"l.{node.lineno}: import {full}")
            elif isinstance(node, ast.Attribute) and node.attr in theirs:
                uses.append(f"l.{node.lineno}: .{node.attr}")
        if uses:
            found[path] = sorted(uses, key=lambda use: int(use[2 : use.index(":")]))
    return found


@pytest.mark.parametrize("allowed", [PRIVATE_API_MODULE])
def test_only_the_compiled_fast_path_touches_sqlalchemy_private_api(allowed: str) -> None:
    uses = private_sqlalchemy_uses(list(modules()))
    assert allowed in uses, f"{allowed} uses no SQLAlchemy private name: is the check blind?"
    assert {path: names for path, names in uses.items() if path != allowed} == {}


def test_the_private_api_check_tells_sqlalchemy_private_names_from_the_project_own() -> None:
    source = (
        "from sqlalchemy.engine import _row_cy\n"
        "import sqlalchemy as sa\n"
        "conn._handle_dbapi_exception(exc, sql, params, cursor, None)\n"
        "row._mapping\n"
        "sa.select\n"
        "class Store:\n"
        "    def __init__(self): self._engine = None\n"
        "    def close(self): self._engine.dispose()\n"
    )
    uses = private_sqlalchemy_uses([("a.py", ast.parse(source))])
    assert uses == {
        "a.py": ["l.1: import sqlalchemy.engine._row_cy", "l.3: ._handle_dbapi_exception"]
    }


# --- no work at import time ------------------------------------------------------------------


def test_importing_and_building_the_app_touches_nothing(tmp_path: Path) -> None:
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
