"""``ticketbridge config show``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

config_cli = typer.Typer(no_args_is_help=True, help="The configuration ticketbridge runs with.")


@config_cli.command("show")
def show() -> None:
    """Print the effective configuration as NAME=value lines, secrets masked.

    An invalid setting stops here as it stops `serve`, with a message naming it.
    """
    from ticketbridge.app.cli.main import _settings_or_exit
    from ticketbridge.app.effective_config import SECRETS_DIR_VARIABLE, render_env
    from ticketbridge.app.settings import Settings

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    secrets_dir = os.environ.get(SECRETS_DIR_VARIABLE, "/run/secrets")
    typer.echo(
        render_env(settings, secrets_dir=secrets_dir if Path(secrets_dir).is_dir() else None)
    )
