"""The ``ticketbridge`` command line."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError

from ticketbridge.app.cli.config import config_cli
from ticketbridge.app.cli.effects import effects_cli
from ticketbridge.app.cli.fixtures import record, replay
from ticketbridge.app.cli.policy_schema import schema_command
from ticketbridge.app.cli.simulate import explain_command, policy_cli, simulate_command
from ticketbridge.app.policy_file import PolicyError, load_policy

# Young-generation collections: CPython's default runs one every 700 net allocations, about
# once per webhook here; every 20,000 cuts the collector's share of a webhook's CPU (measured
# under wrk: about a tenth more webhooks per second) for a few MB of garbage held a little
# longer. The older generations keep their default ratios relative to it.
GC_THRESHOLDS = (20_000, 10, 10)

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
cli.add_typer(effects_cli, name="effects")
cli.add_typer(config_cli, name="config")
cli.add_typer(policy_cli, name="policy")
policy_cli.command("schema")(schema_command)
cli.command("simulate")(simulate_command)
cli.command("explain")(explain_command)
cli.command()(record)
cli.command()(replay)


def _settings_or_exit() -> object:
    from ticketbridge.app.settings import load_settings

    try:
        return load_settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "TICKETBRIDGE_" + "__".join(str(p) for p in err["loc"]).upper()
            typer.echo(f"invalid setting {name}: {err['msg']}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
) -> None:
    """Run the service (migrates the store on start unless told not to)."""
    import uvicorn

    from ticketbridge.app.http.app import create_app
    from ticketbridge.app.http.limits import HttpLimits, protocol_class
    from ticketbridge.app.logging import configure_logging
    from ticketbridge.app.settings import Settings

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    try:
        load_policy(settings.policy_file)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    app = create_app(settings)
    # What exists now (modules, the app, its schemas) lives as long as the process: frozen,
    # it is left out of every garbage collection, which then scans only what requests
    # create (a full collection otherwise walks ~150,000 objects: a pause of tens of ms).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    limits = settings.http
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol_class(
            HttpLimits(
                max_header_bytes=limits.max_header_bytes,
                header_timeout=limits.header_timeout_seconds,
                body_timeout=limits.body_timeout_seconds,
                max_connections=limits.max_connections,
            )
        ),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
        server_header=False,
    )


@cli.command("check-policy")
def check_policy(
    file: Annotated[
        Path | None, typer.Argument(help="Policy YAML (default: the built-in).")
    ] = None,
) -> None:
    """Validate a policy file and print it as ticketbridge understands it."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"# policy {policy.fingerprint}: valid")
    typer.echo(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False).rstrip())


@cli.command()
def migrate() -> None:
    """Bring the database schema to the newest revision."""
    from ticketbridge.adapters.store.engine import Store
    from ticketbridge.adapters.store.errors import StoreError
    from ticketbridge.adapters.urls import redact_url
    from ticketbridge.app.settings import Settings

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        store.migrate()
        current, _ = store.schema_revisions()
    except StoreError as exc:
        typer.echo(f"{redact_url(store.url)}: cannot migrate: {exc.reason}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"{redact_url(store.url)}: schema at {current}")


@cli.command()
def openapi(
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print the HTTP API's OpenAPI document (YAML), as published in openapi.yaml."""
    from ticketbridge.app.http.app import create_app

    text = yaml.safe_dump(
        json.loads(json.dumps(create_app().openapi())), sort_keys=False, allow_unicode=True
    )
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def main() -> None:
    cli()
