"""The project stands alone: no file refers to a folder beside the clone or to the design
notes kept there; what they said is written in docs/ (the reliability table, the policy
reference, the vendors' wire facts in tests/data/vendors/*/README.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(
    r"\.\./shared"
    r"|\b(?:DESIGN|RELIABILITY|VENDORS|STYLE)\.md\b"
    r"|\bRELIABILITY (?:items?|figure)\b"
)


def project_files() -> list[str]:
    """Every file of the project: tracked, or new and not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return sorted({name for name in listed.stdout.decode().split("\0") if name})


def test_the_project_lists_its_files() -> None:
    files = project_files()
    assert {"README.md", "pyproject.toml", "src/ticketbridge/__init__.py"} <= set(files)


def test_no_file_refers_to_a_folder_beside_the_clone_or_the_notes_there() -> None:
    offenders: dict[str, list[str]] = {}
    for name in project_files():
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree, not yet in the index
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not text
        for number, line in enumerate(text.splitlines(), 1):
            if match := OUTSIDE.search(line):
                offenders.setdefault(name, []).append(f"l.{number}: {match.group()}")
    assert offenders == {}
