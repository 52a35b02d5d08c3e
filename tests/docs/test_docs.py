"""The documentation: settings reference, policy schema and examples, README, site build."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from ticketbridge.app.cli.main import cli
from ticketbridge.app.cli.policy_schema import policy_schema
from ticketbridge.app.policy_file import default_policy_text, parse_policy
from ticketbridge.app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    return _load_script("settings_reference")


def _jsonable(value: Any) -> Any:
    """YAML as JSON would carry it: dates as ISO strings (what an editor's validator sees)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _yaml_policies_in(page: Path) -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)
    return [b for b in blocks if re.search(r"^priorities:", b, re.MULTILINE)]


# --- configuration reference ------------------------------------------------------------------


def test_every_setting_has_a_description(reference: ModuleType) -> None:
    assert reference.undocumented() == []
    assert reference.stale_descriptions() == []


def test_a_setting_added_without_a_description_is_reported(reference: ModuleType) -> None:
    class Section(BaseModel):
        documented: int = Field(default=1, description="Has one.")
        brand_new: int = 2

    class Grown(Settings):
        section: Section = Field(default_factory=Section)
        top_level_new: str = "x"

    assert reference.undocumented(Grown) == [
        "TICKETBRIDGE_TOP_LEVEL_NEW",
        "TICKETBRIDGE_SECTION__BRAND_NEW",
    ]


def test_the_configuration_page_holds_the_generated_table(reference: ModuleType) -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert reference.render(page) == page, "run: .venv/bin/python scripts/settings_reference.py"
    for setting in reference.settings():
        assert f"| `{setting.variable}` |" in page


def test_the_table_shows_defaults_and_marks_secrets(reference: ModuleType) -> None:
    rows = {s.variable: s for s in reference.settings()}
    assert rows["TICKETBRIDGE_DISPATCH__MAX_ATTEMPTS"].default == "`10`"
    assert rows["TICKETBRIDGE_FRESHDESK__REREAD"].default == "`true`"
    assert rows["TICKETBRIDGE_ADMIN_TOKEN"].default == "unset"
    assert rows["TICKETBRIDGE_VICTOROPS__REST_URL"].secret
    assert rows["TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS"].secret
    assert not rows["TICKETBRIDGE_GITHUB__REPOSITORY"].secret


# --- policy schema ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_built_in_policy_matches_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    validator.validate(_jsonable(yaml.safe_load(default_policy_text())))


def test_every_example_policy_in_the_docs_matches_the_schema_and_loads(
    validator: jsonschema.Draft202012Validator,
) -> None:
    examples = _yaml_policies_in(DOCS / "policy.md")
    assert len(examples) >= 2  # the built-in one and the fuller example
    for text in examples:
        validator.validate(_jsonable(yaml.safe_load(text)))
        parse_policy(text, source="docs/policy.md")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("priorities", "urgent", "tier_one", "within"), "soon"),
        (("priorities", "urgent", "tier_one", "within"), "1h30m"),
        (("priorities", "urgent", "tier_one", "then"), "panic"),
        (("priorities", "urgent", "colour"), "red"),
        (("calendars", "always", "days"), ["someday"]),
    ],
)
def test_the_schema_refuses_what_check_policy_refuses(
    validator: jsonschema.Draft202012Validator, path: tuple[str, ...], value: object
) -> None:
    data = _jsonable(yaml.safe_load(default_policy_text()))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert not validator.is_valid(data)
    with pytest.raises(ValueError, match="invalid policy"):
        parse_policy(yaml.safe_dump(data), source="mutated")


def test_a_policy_missing_a_priority_fails_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    data = _jsonable(yaml.safe_load(default_policy_text()))
    del data["priorities"]["low"]
    assert not validator.is_valid(data)


def test_policy_schema_prints_the_schema_and_the_docs_copy_is_current() -> None:
    result = CliRunner().invoke(cli, ["policy", "schema"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == policy_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    copy = json.loads((DOCS / "policy.schema.json").read_text(encoding="utf-8"))
    assert copy == printed, "run: .venv/bin/ticketbridge policy schema > docs/policy.schema.json"


def test_the_policy_reference_shows_the_built_in_policy_verbatim() -> None:
    page = (DOCS / "policy.md").read_text(encoding="utf-8")
    assert default_policy_text().strip() in page


def test_the_policy_reference_names_every_key_of_the_model() -> None:
    page = (DOCS / "policy.md").read_text(encoding="utf-8")
    schema = policy_schema()
    keys = set(schema["properties"])
    for definition in schema["$defs"].values():
        keys |= set(definition.get("properties", {}))
    missing = sorted(k for k in keys if f"`{k}" not in page and f".{k}`" not in page)
    assert missing == []


# --- README and the repository's own references -------------------------------------------------


def test_the_readme_is_short() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 25 * 1024
    assert len(text.splitlines()) <= 250


def test_the_readme_starts_with_the_two_commands_and_what_make_test_needs() -> None:
    text = README.read_text(encoding="utf-8")
    commands = text.index("## The two commands")
    assert text.index("make run ") > commands
    assert text.index("make test ") > commands
    for need in ("127.0.0.1:5432", "TICKETBRIDGE_TEST_POSTGRESQL_URL", "root", "buildah"):
        assert need in text[commands : text.index("## Five minutes")]


def test_every_command_the_readme_lists_exists() -> None:
    text = README.read_text(encoding="utf-8")
    block = text[text.index("## The command line") : text.index("## Documentation")]
    runner = CliRunner()
    for line in block.splitlines():
        match = re.match(r"ticketbridge ((?:[a-z-]+)(?: [a-z]+)?)", line)
        if not match:
            continue
        words = [w for w in match.group(1).split() if w.isalpha() or "-" in w]
        result = runner.invoke(cli, [*words, "--help"])
        assert result.exit_code == 0, f"{line}: {result.output}"


def test_every_local_link_in_the_readme_resolves() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?!https?:)[^)#]+)", text)
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


# --- the site -----------------------------------------------------------------------------------


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    result = _mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "policy" / "index.html").is_file()
    assert (tmp_path / "site" / "policy.schema.json").is_file()


def test_a_broken_anchor_fails_the_strict_build(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    page = copy / "docs" / "index.md"
    page.write_text(page.read_text() + "\n[gone](policy.md#no-such-heading)\n")
    result = _mkdocs_build(copy / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr
