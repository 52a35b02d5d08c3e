"""``ticketbridge record`` and ``ticketbridge replay``: webhook fixtures (docs/fixtures.md).

Importing this module does nothing but define the commands; the proxy, HTTP client and
settings are imported when a command runs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit, urlunsplit

import typer

if TYPE_CHECKING:
    from ticketbridge.app.recording.proxy import SourceSecrets
    from ticketbridge.app.recording.replay import ReplaySecrets, Sent
    from ticketbridge.app.settings import Settings


def _settings() -> Settings:
    from ticketbridge.app.cli.main import _settings_or_exit
    from ticketbridge.app.settings import Settings

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    return settings


def _base_url(value: str, option: str) -> str:
    """An http(s) base URL, or exit 2 (the message never repeats the value: it may hold a
    password)."""
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        typer.echo(f"{option} must be an http(s) URL such as http://127.0.0.1:8080", err=True)
        raise typer.Exit(2)
    return value.rstrip("/")


def _shown(url: str) -> str:
    """The base URL for messages: its password masked (``redact_url``), any query or fragment
    left out (a base URL needs neither, and either may carry a token)."""
    from ticketbridge.adapters.urls import redact_url

    parts = urlsplit(url)
    return redact_url(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        typer.echo("--listen must be HOST:PORT, e.g. 127.0.0.1:8081", err=True)
        raise typer.Exit(2)
    return host, int(port)


def _sink_secrets() -> SourceSecrets:
    from ticketbridge.app.recording.proxy import SourceSecrets

    settings = _settings()
    return SourceSecrets(
        freshdesk=tuple(s.get_secret_value() for s in settings.freshdesk.webhook_secrets),
        zendesk=tuple(s.get_secret_value() for s in settings.zendesk.webhook_secrets),
        generic=tuple(s.get_secret_value() for s in settings.generic.webhook_secrets),
    )


def record(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Directory for the fixture files (created; must hold no fixture yet)."
        ),
    ],
    listen: Annotated[
        str, typer.Option(help="HOST:PORT the recording proxy listens on.")
    ] = "127.0.0.1:8081",
    forward: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the running service: each request is forwarded there unchanged, "
            "its answer relayed, and it is recorded when the answer is 2xx. Without it the "
            "proxy checks the credentials itself (the service's TICKETBRIDGE_*__WEBHOOK_SECRETS) "
            "and answers 202."
        ),
    ] = None,
    scrub_subject: Annotated[
        bool, typer.Option("--scrub-subject", help="Replace ticket subjects by placeholders too.")
    ] = False,
    max_body_bytes: Annotated[
        int, typer.Option(min=1024, help="Largest body taken (413 above).")
    ] = 1024 * 1024,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the service's answer.")
    ] = 10.0,
) -> None:
    """Record inbound webhooks as scrubbed fixture files (a proxy in front of the service).

    Send webhooks to http://LISTEN/webhooks/{freshdesk,zendesk,generic}; stop with Ctrl-C.
    """
    import uvicorn

    from ticketbridge.app.recording.fixtures import FixtureError, FixtureWriter
    from ticketbridge.app.recording.proxy import SourceSecrets, create_recorder_app
    from ticketbridge.app.recording.scrub import Scrubber

    host, port = _listen(listen)
    target = _base_url(forward, "--forward") if forward is not None else None
    secrets = SourceSecrets() if target is not None else _sink_secrets()
    accepted = [s for s in ("freshdesk", "zendesk", "generic") if getattr(secrets, s)]
    if target is None and not accepted:
        typer.echo(
            "without --forward the proxy checks credentials itself, and no "
            "TICKETBRIDGE_{FRESHDESK,ZENDESK,GENERIC}__WEBHOOK_SECRETS is set",
            err=True,
        )
        raise typer.Exit(2)
    writer = FixtureWriter(out, Scrubber(scrub_subject=scrub_subject))
    try:
        writer.check_empty()
    except (FixtureError, OSError) as exc:
        typer.echo(str(exc) if isinstance(exc, FixtureError) else f"{out}: {exc}", err=True)
        raise typer.Exit(2) from None
    app = create_recorder_app(
        writer,
        forward=target,
        secrets=secrets,
        max_body_bytes=max_body_bytes,
        timeout=timeout,
        log=lambda line: typer.echo(line, err=True),
    )
    where = f"forwarding to {_shown(target)}" if target else f"accepting {', '.join(accepted)}"
    typer.echo(f"recording into {out}; {where}; listening on {host}:{port}", err=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def _replay_secrets(
    needed: set[str], freshdesk: str | None, zendesk: str | None, generic: str | None
) -> ReplaySecrets:
    """Options first, then the first of the service's own setting for each source needed."""
    from ticketbridge.adapters.inbound.signatures import standard_secret
    from ticketbridge.app.recording.replay import ReplaySecrets

    given = {"freshdesk": freshdesk, "zendesk": zendesk, "generic": generic}
    if any(given[s] is None for s in needed):
        settings = _settings()
        configured = {
            "freshdesk": settings.freshdesk.webhook_secrets,
            "zendesk": settings.zendesk.webhook_secrets,
            "generic": settings.generic.webhook_secrets,
        }
        for source in needed:
            if given[source] is None and configured[source]:
                given[source] = configured[source][0].get_secret_value()
    missing = sorted(s for s in needed if not given[s])
    if missing:
        typer.echo(
            "no secret for "
            + ", ".join(missing)
            + ": give "
            + ", ".join(f"--{s}-secret" for s in missing)
            + " or set "
            + ", ".join(f"TICKETBRIDGE_{s.upper()}__WEBHOOK_SECRETS" for s in missing),
            err=True,
        )
        raise typer.Exit(2)
    if "generic" in needed:
        try:
            standard_secret(given["generic"] or "")
        except ValueError:
            typer.echo("the generic secret must be whsec_<base64> (or base64)", err=True)
            raise typer.Exit(2) from None
    return ReplaySecrets(**given)


def _line(sent: Sent) -> str:
    status = str(sent.status) if sent.status is not None else "---"
    return f"{sent.fixture.path.name}  {sent.fixture.source:<9}  {status}  {sent.outcome}"


def replay(
    fixtures: Annotated[
        list[Path],
        typer.Argument(
            exists=True, help="Fixture files or directories (their *.json, in number order)."
        ),
    ],
    to: Annotated[
        str, typer.Option("--to", help="Base URL of the running service.", show_default=False)
    ],
    speed: Annotated[
        float, typer.Option(min=0.001, help="Divide the recorded gaps by this.")
    ] = 1.0,
    compress: Annotated[
        bool, typer.Option("--compress", help="No waiting between requests at all.")
    ] = False,
    max_wait: Annotated[
        float, typer.Option(min=0, help="Longest wait between two requests, in seconds.")
    ] = 60.0,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for each answer.")
    ] = 10.0,
    shift_times: Annotated[
        bool,
        typer.Option(
            help="Move the event times in the bodies (ticket_updated_at, updated_at) so the "
            "recording's timeline starts now.",
        ),
    ] = True,
    freshdesk_secret: Annotated[
        str | None,
        typer.Option(
            help="Basic password for Freshdesk fixtures "
            "(default: the first of TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS).",
            show_default=False,
        ),
    ] = None,
    zendesk_secret: Annotated[
        str | None,
        typer.Option(
            help="Signing secret for Zendesk fixtures "
            "(default: the first of TICKETBRIDGE_ZENDESK__WEBHOOK_SECRETS).",
            show_default=False,
        ),
    ] = None,
    generic_secret: Annotated[
        str | None,
        typer.Option(
            help="whsec_ secret for generic fixtures "
            "(default: the first of TICKETBRIDGE_GENERIC__WEBHOOK_SECRETS).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send fixtures to a running service, spaced as recorded (or faster), freshly signed.

    Exit 1 if any answer was not 2xx (a duplicate's 200 is), 2 if fixtures or options are unusable.
    """
    import httpx

    from ticketbridge.app.recording.fixtures import FixtureError, load_fixtures
    from ticketbridge.app.recording.replay import gaps
    from ticketbridge.app.recording.replay import replay as send_all

    base = _base_url(to, "--to")
    try:
        loaded = load_fixtures(fixtures)
    except FixtureError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if not loaded:
        typer.echo("no fixture files found", err=True)
        raise typer.Exit(2)
    secrets = _replay_secrets(
        {f.source for f in loaded}, freshdesk_secret, zendesk_secret, generic_secret
    )
    waits = gaps(
        [f.offset_seconds for f in loaded], speed=speed, compress=compress, max_wait=max_wait
    )
    typer.echo(
        f"replaying {len(loaded)} fixture(s) to {_shown(base)}; "
        f"up to {sum(waits):.1f} s of waiting",
        err=True,
    )
    with httpx.Client(base_url=base, timeout=timeout, trust_env=False) as client:
        try:
            results = send_all(
                loaded,
                client=client,
                secrets=secrets,
                waits=waits,
                shift_times=shift_times,
                report=lambda sent: typer.echo(_line(sent)),
            )
        except FixtureError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
    statuses = Counter(str(s.status) if s.status is not None else "no answer" for s in results)
    failed = sum(not s.ok for s in results)
    breakdown = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    typer.echo(
        f"{len(results)} sent, {len(results) - failed} answered 2xx, {failed} not ({breakdown})"
    )
    if failed:
        raise typer.Exit(1)
