"""``ticketbridge config show``: every setting by its variable name, no secret in the output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ticketbridge.app.cli.main import cli
from ticketbridge.app.effective_config import MASK, env_names, mask_database_url
from ticketbridge.app.settings import Settings

SECRETS = {
    "TICKETBRIDGE_ADMIN_TOKEN": "admin-token-XYZZY",
    "TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS": "hook-one-XYZZY,hook-two-XYZZY",
    "TICKETBRIDGE_FRESHDESK__API_KEY": "fd-key-XYZZY",
    "TICKETBRIDGE_VICTOROPS__API_ID": "vo-id-XYZZY",
    "TICKETBRIDGE_VICTOROPS__API_KEY": "vo-key-XYZZY",
    "TICKETBRIDGE_VICTOROPS__TIER_TWO_ROUTING_KEY": "rk2-XYZZY",
}
REST_URL = "https://alert.victorops.com/integrations/generic/20131114/alert/apikey/routing"
DATABASE_URL = "postgresql://ticketbridge:db-pass-XYZZY@postgres:5432/ticketbridge"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TICKETBRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TICKETBRIDGE_SECRETS_DIR", str(tmp_path / "no-secrets"))


def show() -> tuple[int, str, dict[str, str]]:
    result = CliRunner().invoke(cli, ["config", "show"])
    values = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if not line.startswith("#")
    )
    return result.exit_code, result.output, values


def test_names_are_the_settings_variables_and_secrets_are_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, secret in SECRETS.items():
        monkeypatch.setenv(name, secret)
    monkeypatch.setenv("TICKETBRIDGE_VICTOROPS__REST_URL", REST_URL)
    monkeypatch.setenv("TICKETBRIDGE_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("TICKETBRIDGE_DISPATCH__MAX_ATTEMPTS", "7")
    code, output, values = show()
    assert code == 0, output
    assert "XYZZY" not in output
    assert "apikey" not in output
    assert "routing" not in output
    assert list(values) == env_names()
    assert values["TICKETBRIDGE_ADMIN_TOKEN"] == MASK
    assert values["TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS"] == f"{MASK},{MASK}"
    assert values["TICKETBRIDGE_VICTOROPS__REST_URL"] == MASK
    assert values["TICKETBRIDGE_DATABASE_URL"] == (
        f"postgresql://ticketbridge:{MASK}@postgres:5432/ticketbridge"
    )
    assert values["TICKETBRIDGE_DISPATCH__MAX_ATTEMPTS"] == "7"
    assert values["TICKETBRIDGE_FRESHDESK__REREAD"] == "true"
    assert values["TICKETBRIDGE_POLICY_FILE"] == ""  # unset


def test_secret_files_are_read_and_masked_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "ticketbridge_victorops__rest_url").write_text(REST_URL + "\n")
    (secrets / "ticketbridge_admin_token").write_text("file-token-XYZZY")
    monkeypatch.setenv("TICKETBRIDGE_SECRETS_DIR", str(secrets))
    code, output, values = show()
    assert code == 0, output
    assert "XYZZY" not in output
    assert "apikey" not in output
    assert values["TICKETBRIDGE_ADMIN_TOKEN"] == values["TICKETBRIDGE_VICTOROPS__REST_URL"] == MASK
    assert f"secret files: {secrets}" in output


def test_every_settings_field_has_a_name() -> None:
    names = env_names()
    assert len(names) == len(set(names))
    for field in Settings.model_fields:
        assert any(n.startswith(f"TICKETBRIDGE_{field.upper()}") for n in names)
    assert "TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS" in names
    assert "TICKETBRIDGE_SCHEDULER__BATCH_SIZE" in names


def test_an_invalid_setting_stops_it_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETBRIDGE_DISPATCH__MAX_ATTEMPTS", "0")
    monkeypatch.setenv("TICKETBRIDGE_ADMIN_TOKEN", "admin-token-XYZZY")
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 2
    assert "invalid setting TICKETBRIDGE_DISPATCH__MAX_ATTEMPTS" in result.output
    assert "XYZZY" not in result.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:////data/ticketbridge.db", "sqlite:////data/ticketbridge.db"),
        ("postgresql://tb@db/tb", "postgresql://tb@db/tb"),
        (
            "postgresql://db/tb?user=tb&password=pw-XYZZY&sslmode=require",
            f"postgresql://db/tb?user=tb&password={MASK}&sslmode=require",
        ),
        ("postgresql://tb:p%40ss@db:5433/tb", f"postgresql://tb:{MASK}@db:5433/tb"),
        ("not a url at all XYZZY", MASK),
    ],
)
def test_database_url_passwords_are_masked_wherever_they_are(url: str, shown: str) -> None:
    assert mask_database_url(url) == shown
