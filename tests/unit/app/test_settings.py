"""Settings from the environment and a secrets directory; bad ones stop start-up by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ticketbridge.app.cli.main import cli
from ticketbridge.app.settings import DEFAULT_DATABASE_URL, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TICKETBRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TICKETBRIDGE_SECRETS_DIR", str(tmp_path / "no-secrets"))


def test_defaults_need_nothing() -> None:
    settings = load_settings()
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///ticketbridge.db"
    assert settings.freshdesk.webhook_secrets == []
    assert settings.victorops.rest_url is None
    assert settings.admin_token is None
    assert settings.max_body_bytes == 1024 * 1024


def test_nested_environment_and_comma_separated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS", "old-one, new-one")
    monkeypatch.setenv("TICKETBRIDGE_VICTOROPS__REST_URL", "https://alert.example/a/KEY/RK")
    monkeypatch.setenv("TICKETBRIDGE_DISPATCH__MAX_ATTEMPTS", "3")
    settings = load_settings()
    assert [s.get_secret_value() for s in settings.freshdesk.webhook_secrets] == [
        "old-one",
        "new-one",
    ]
    assert settings.victorops.rest_url is not None
    assert "KEY" not in repr(settings)
    assert settings.dispatch.max_attempts == 3


def test_secrets_directory_files_including_nested_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "ticketbridge_admin_token").write_text("tok")
    (secrets / "ticketbridge_victorops__rest_url").write_text("https://alert.example/a/K/R")
    monkeypatch.setenv("TICKETBRIDGE_SECRETS_DIR", str(secrets))
    settings = load_settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "tok"
    assert settings.victorops.rest_url is not None
    assert settings.victorops.rest_url.get_secret_value() == "https://alert.example/a/K/R"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TICKETBRIDGE_DATABASE_URL", "mysql://x", "invalid setting TICKETBRIDGE_DATABASE_URL"),
        (
            "TICKETBRIDGE_VICTOROPS__REST_URL",
            "not-a-url",
            "invalid setting TICKETBRIDGE_VICTOROPS__REST_URL",
        ),
        (
            "TICKETBRIDGE_DISPATCH__MAX_ATTEMPTS",
            "zero",
            "invalid setting TICKETBRIDGE_DISPATCH__MAX_ATTEMPTS",
        ),
    ],
)
def test_an_invalid_setting_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 2
    assert message in result.output
    assert value not in result.output or name.endswith("ATTEMPTS")
