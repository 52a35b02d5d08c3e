"""``ticketbridge record`` and ``replay`` against real ``ticketbridge serve`` processes.

Every process listens on 127.0.0.1 only and every wait is bounded; all are stopped at the end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.fault.process import TICKETBRIDGE, TicketbridgeProcess, free_port, service_env
from ticketbridge.adapters.inbound.signatures import (
    standard_secret,
    standard_signature,
    zendesk_signature,
)
from ticketbridge.app.cli.main import cli
from ticketbridge.app.recording.fixtures import FixtureWriter, load_fixtures
from ticketbridge.app.recording.proxy import SourceSecrets, create_recorder_app
from ticketbridge.app.recording.scrub import Scrubber

FD_SECRET = "fd-secret-XYZZY"
ZD_SECRET = "zd-secret-XYZZY"
WH_SECRET = "whsec_" + base64.b64encode(b"generic-secret-XYZZY").decode()
ADMIN_TOKEN = "admin-token-XYZZY"
SECRET_SETTINGS = {
    "FRESHDESK__WEBHOOK_SECRETS": FD_SECRET,
    "ZENDESK__WEBHOOK_SECRETS": ZD_SECRET,
    "GENERIC__WEBHOOK_SECRETS": WH_SECRET,
}
ALL_SECRETS = (FD_SECRET, ZD_SECRET, WH_SECRET, WH_SECRET.removeprefix("whsec_"), ADMIN_TOKEN)
REPO_FIXTURES = Path(__file__).resolve().parents[2] / "examples" / "webhooks"
# Personal data the sent bodies carry; none of it may reach a fixture file.
PERSONAL = (
    "Jane",
    "Roe",
    "jane.roe",
    "customer.example",
    "7946",
    "Max Muster",
    "max@acme.example",
    "My card was charged twice",
    "+1 415",
)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[[str], TicketbridgeProcess]]:
    """A factory: ``service("name")`` is a healthy ``ticketbridge serve`` with its own SQLite
    database and the webhook secrets above."""
    made: list[TicketbridgeProcess] = []

    def start(name: str) -> TicketbridgeProcess:
        settings = {
            "DATABASE_URL": f"sqlite:///{tmp_path / name}.db",
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "LOG_FORMAT": "json",
            **SECRET_SETTINGS,
        }
        proc = TicketbridgeProcess(
            env=service_env(tmp_path, **settings), log_path=tmp_path / f"{name}.log"
        )
        made.append(proc)
        proc.start()
        proc.wait_healthy(timeout=30)
        return proc

    yield start
    for proc in made:
        proc.stop()


@contextlib.contextmanager
def recorder(tmp_path: Path, *args: str, **settings: str) -> Iterator[str]:
    """``ticketbridge record ARGS`` as a child process; yields its base URL. Stopped with
    SIGINT (Ctrl-C) at the end; its output is in ``tmp_path/recorder.log``."""
    port = free_port()
    log_path = tmp_path / "recorder.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(TICKETBRIDGE), "record", "--listen", f"127.0.0.1:{port}", *args],
            env=service_env(tmp_path, **settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            with httpx.Client(base_url=url, timeout=1.0, trust_env=False) as client:
                while True:
                    if proc.poll() is not None:
                        pytest.fail(
                            f"record exited with {proc.returncode}:\n{log_path.read_text()}"
                        )
                    with contextlib.suppress(httpx.TransportError):
                        if client.get("/healthz").status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        pytest.fail(f"record not listening within 30 s:\n{log_path.read_text()}")
                    time.sleep(0.05)
            yield url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def run_replay(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TICKETBRIDGE), "replay", *args],
        env=service_env(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ticket(proc: TicketbridgeProcess, source: str, ticket_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=proc.base_url, timeout=5, trust_env=False) as client:
        response = client.get(
            f"/v1/tickets/{source}/{ticket_id}",
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


# --- what the helpdesks send ------------------------------------------------------------------


def freshdesk_request(now: datetime) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    body = {
        "freshdesk_webhook": {
            "triggered_event": "{ticket_action:created}",
            "ticket_id": "501",
            "ticket_url": "https://acme.freshdesk.com/helpdesk/tickets/501",
            "ticket_type": "Incident",
            "ticket_subject": "Checkout fails for jane.roe@customer.example",
            "ticket_description": "<div>My card was charged twice. Call +44 20 7946 0958</div>",
            "ticket_status": "Open",
            "ticket_priority": "Urgent",
            "ticket_updated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ticket_agent_email": "",
            "ticket_tags": "checkout, eu",
            "requester_name": "Jane Roe",
            "requester_email": "jane.roe@customer.example",
        }
    }
    token = base64.b64encode(f"x:{FD_SECRET}".encode()).decode()
    headers = {"content-type": "application/json", "authorization": f"Basic {token}"}
    return json.dumps(body, indent=1).encode(), headers, body


def zendesk_request(
    now: datetime, *, secret: str = ZD_SECRET
) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    body = {
        "zendesk_webhook": {
            "ticket_id": "502",
            "ticket_url": "acme.zendesk.com/agent/tickets/502",
            "ticket_subject": "API returns 502",
            "ticket_status": "New",
            "ticket_priority": "High",
            "ticket_assignee_email": "max@acme.example",
            "ticket_requester_name": "Jane Roe",
            "ticket_tags": "api orders",
            "ticketbridge_event": "created",
        }
    }
    raw = json.dumps(body).encode()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "content-type": "application/json",
        "x-zendesk-webhook-id": "01HZX3F9K2V8QW7M4N6P5R1T0Y",
        "x-zendesk-webhook-invocation-id": "8350205582",
        "x-zendesk-webhook-signature-timestamp": stamp,
        "x-zendesk-webhook-signature": zendesk_signature(secret.encode(), stamp, raw),
    }
    return raw, headers, body


def generic_request(now: datetime) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    body = {
        "source": "acme-desk",
        "ticket_id": "T-503",
        "priority": "urgent",
        "status": "open",
        "event": "created",
        "domain": "acme",
        "subject": "Everything is down",
        "assigned": True,
        "requester": {"name": "Max Muster", "phone": "+1 415 555 0100"},
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    stamp = str(int(now.timestamp()))
    headers = {
        "content-type": "application/json",
        "webhook-id": "msg_2Lq0abc",
        "webhook-timestamp": stamp,
        "webhook-signature": standard_signature(
            standard_secret(WH_SECRET), "msg_2Lq0abc", stamp, raw
        ),
    }
    return raw, headers, body


# --- record, then replay -----------------------------------------------------------------------


def test_record_through_the_proxy_then_replay_into_a_fresh_service(
    tmp_path: Path, service: Callable[[str], TicketbridgeProcess]
) -> None:
    first = service("first")
    out = tmp_path / "recorded"
    now = datetime.now(UTC)
    requests = [freshdesk_request(now), zendesk_request(now), generic_request(now)]
    forged = zendesk_request(now, secret="not-the-secret")
    with (
        recorder(tmp_path, "--forward", first.base_url, "--out", str(out)) as url,
        httpx.Client(base_url=url, timeout=10, trust_env=False) as client,
    ):
        answers = []
        for path, (raw, headers, _) in zip(
            ("freshdesk", "zendesk", "generic"), requests, strict=True
        ):
            answers.append(client.post(f"/webhooks/{path}", content=raw, headers=headers))
            time.sleep(0.2)
        refused = client.post("/webhooks/zendesk", content=forged[0], headers=forged[1])
    # The service's answers come back unchanged.
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json()["ticket_id"] for a in answers] == ["501", "502", "T-503"]
    assert refused.status_code == 401
    assert ticket(first, "freshdesk", "501")["state"]["priority"] == "urgent"

    # Only the authentic requests were recorded, in order, spaced as they came.
    assert sorted(p.name for p in out.iterdir()) == [
        "0001-freshdesk.json",
        "0002-zendesk.json",
        "0003-generic.json",
    ]
    fixtures = load_fixtures([out])
    offsets = [f.offset_seconds for f in fixtures]
    assert offsets[0] == 0.0
    assert offsets[0] < offsets[1] < offsets[2] < 30
    for fixture_path in out.iterdir():
        text = fixture_path.read_text(encoding="utf-8")
        for forbidden in (*PERSONAL, *ALL_SECRETS, "authorization", "signature", "Basic "):
            assert forbidden.lower() not in text.lower(), (fixture_path.name, forbidden)

    # Faithful otherwise: the kept headers and every field but the personal ones.
    fd, zd, gen = fixtures
    assert fd.headers == {"content-type": "application/json"}
    assert zd.headers == {
        "content-type": "application/json",
        "x-zendesk-webhook-id": "01HZX3F9K2V8QW7M4N6P5R1T0Y",
        "x-zendesk-webhook-invocation-id": "8350205582",
    }
    assert gen.headers == {"content-type": "application/json", "webhook-id": "msg_2Lq0abc"}
    assert fd.body == {
        "freshdesk_webhook": requests[0][2]["freshdesk_webhook"]
        | {
            "ticket_subject": "Checkout fails for person-1@example.invalid",
            "ticket_description": "text-1",
            "requester_name": "name-1",
            "requester_email": "person-1@example.invalid",
        }
    }
    assert zd.body == {
        "zendesk_webhook": requests[1][2]["zendesk_webhook"]
        | {"ticket_assignee_email": "person-2@example.invalid", "ticket_requester_name": "name-1"}
    }
    assert gen.body == requests[2][2] | {"requester": {"name": "name-2", "phone": "phone-1"}}

    log = (tmp_path / "recorder.log").read_text(encoding="utf-8")
    assert "freshdesk: recorded 0001-freshdesk.json (202)" in log
    assert "zendesk: not recorded: the service answered 401" in log
    for secret in ALL_SECRETS:
        assert secret not in log

    # Replay into a fresh service, secrets from its own settings: every fixture re-signed.
    second = service("second")
    result = run_replay(
        tmp_path, str(out), "--to", second.base_url, "--compress", **SECRET_SETTINGS
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:3] for line in lines[:3]] == [
        ["0001-freshdesk.json", "freshdesk", "202"],
        ["0002-zendesk.json", "zendesk", "202"],
        ["0003-generic.json", "generic", "202"],
    ]
    assert lines[3] == "3 sent, 3 answered 2xx, 0 not (202: 3)"
    for secret in ALL_SECRETS:
        assert secret not in result.stdout + result.stderr
    assert ticket(second, "freshdesk", "501")["state"]["priority"] == "urgent"
    assert ticket(second, "zendesk", "502")["state"]["priority"] == "high"
    assert ticket(second, "acme-desk", "T-503")["state"]["status"] == "open"


def test_the_repository_fixtures_replay_and_a_wrong_secret_fails_the_run(
    tmp_path: Path, service: Callable[[str], TicketbridgeProcess]
) -> None:
    proc = service("repo")
    result = run_replay(
        tmp_path,
        str(REPO_FIXTURES),
        "--to",
        proc.base_url,
        "--compress",
        "--freshdesk-secret",
        FD_SECRET,
        "--zendesk-secret",
        ZD_SECRET,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[2] for line in result.stdout.splitlines()[:3]] == ["202"] * 3
    view = ticket(proc, "freshdesk", "4711")
    assert view["state"]["status"] == "resolved"
    # The recording's timeline was moved to now (it was recorded the day before).
    opened = datetime.fromisoformat(view["state"]["opened_at"])
    assert abs(opened - datetime.now(UTC)) < timedelta(minutes=5)
    assert ticket(proc, "zendesk", "8123")["state"]["priority"] == "high"

    # Again, with a wrong Freshdesk secret: Freshdesk's are refused and the run fails. Zendesk's
    # is signed anew with its update time moved to now: a new delivery (its unsigned invocation
    # id is no dedup key), taken with no new effect. No secret is printed.
    wrong = "wrong-secret-XYZZY"
    again = run_replay(
        tmp_path,
        str(REPO_FIXTURES),
        "--to",
        proc.base_url,
        "--compress",
        "--freshdesk-secret",
        wrong,
        **SECRET_SETTINGS,
    )
    assert again.returncode == 1
    lines = again.stdout.splitlines()
    assert [line.split()[2] for line in lines[:3]] == ["401", "202", "401"]
    assert "effects=0" in lines[1]
    assert lines[3] == "3 sent, 1 answered 2xx, 2 not (202: 1, 401: 2)"
    for secret in (*ALL_SECRETS, wrong):
        assert secret not in again.stdout + again.stderr


# --- the proxy without a service behind it ------------------------------------------------------


async def test_without_forward_the_proxy_checks_credentials_itself(tmp_path: Path) -> None:
    writer = FixtureWriter(tmp_path / "rec", Scrubber())
    writer.check_empty()
    app = create_recorder_app(
        writer,
        forward=None,
        secrets=SourceSecrets(freshdesk=(FD_SECRET,), generic=(WH_SECRET,)),
        max_body_bytes=2048,
    )
    now = datetime.now(UTC)
    raw, headers, _ = freshdesk_request(now)
    # Without --forward the app has nothing to start: no lifespan needed.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        good = await client.post("/webhooks/freshdesk", content=raw, headers=headers)
        bad_auth = headers | {"authorization": "Basic " + base64.b64encode(b"x:nope").decode()}
        wrong = await client.post("/webhooks/freshdesk", content=raw, headers=bad_auth)
        # No Zendesk secret configured: nothing from Zendesk is taken (as in the service).
        zd_raw, zd_headers, _ = zendesk_request(now)
        unsigned = await client.post("/webhooks/zendesk", content=zd_raw, headers=zd_headers)
        gen_raw, gen_headers, _ = generic_request(now)
        signed = await client.post("/webhooks/generic", content=gen_raw, headers=gen_headers)
        not_json = await client.post("/webhooks/freshdesk", content=b"[1, 2]", headers=headers)
        too_big = await client.post("/webhooks/freshdesk", content=b"x" * 4096, headers=headers)
        unknown = await client.post("/webhooks/jira", content=raw, headers=headers)
    assert (good.status_code, good.json()) == (
        202,
        {"outcome": "recorded", "fixture": "0001-freshdesk.json"},
    )
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Basic realm="ticketbridge"'
    assert unsigned.status_code == 401
    assert signed.status_code == 202
    assert [not_json.status_code, too_big.status_code, unknown.status_code] == [400, 413, 404]
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == [
        "0001-freshdesk.json",
        "0002-generic.json",
    ]


# --- the commands' refusals ------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TICKETBRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TICKETBRIDGE_SECRETS_DIR", str(tmp_path / "no-secrets"))


@pytest.mark.usefixtures("clean_env")
def test_replay_without_a_secret_or_a_service_says_so(tmp_path: Path) -> None:
    runner = CliRunner()
    to = f"http://127.0.0.1:{free_port()}"
    missing = runner.invoke(cli, ["replay", str(REPO_FIXTURES), "--to", to])
    assert missing.exit_code == 2
    assert "no secret for freshdesk, zendesk" in missing.output

    unreachable = runner.invoke(
        cli,
        ["replay", str(REPO_FIXTURES / "0002-zendesk.json"), "--to", to, "--zendesk-secret", "s"],
    )
    assert unreachable.exit_code == 1
    assert "0002-zendesk.json  zendesk    ---  no answer: ConnectError" in unreachable.output

    bad_secret = runner.invoke(
        cli, ["replay", str(tmp_path), "--to", to, "--generic-secret", "not base64 XYZZY"]
    )
    assert bad_secret.exit_code == 2  # no fixture in an empty directory
    (tmp_path / "0001-generic.json").write_text('{"source": "generic", "body": {}}')
    bad_secret = runner.invoke(
        cli, ["replay", str(tmp_path), "--to", to, "--generic-secret", "not base64 XYZZY"]
    )
    assert bad_secret.exit_code == 2
    assert "whsec_" in bad_secret.output
    assert "XYZZY" not in bad_secret.output

    not_a_url = runner.invoke(cli, ["replay", str(tmp_path), "--to", "ftp://u:XYZZY@host"])
    assert not_a_url.exit_code == 2
    assert "XYZZY" not in not_a_url.output


@pytest.mark.usefixtures("clean_env")
def test_record_refuses_a_used_directory_and_a_sink_without_secrets(tmp_path: Path) -> None:
    runner = CliRunner()
    used = tmp_path / "used"
    used.mkdir()
    (used / "0001-freshdesk.json").write_text("{}")
    refused = runner.invoke(cli, ["record", "--out", str(used), "--forward", "http://127.0.0.1:9"])
    assert refused.exit_code == 2
    assert "already holds fixtures" in refused.output

    no_secrets = runner.invoke(cli, ["record", "--out", str(tmp_path / "new")])
    assert no_secrets.exit_code == 2
    assert "WEBHOOK_SECRETS" in no_secrets.output


async def test_the_proxy_relays_every_answer_and_records_only_2xx(tmp_path: Path) -> None:
    """In-process, with a stand-in service: what is relayed, what is recorded."""
    seen: list[httpx.Request] = []

    def stand_in(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != "Bearer good":
            return httpx.Response(401, json={"error": "unauthorized"})
        if request.url.path == "/webhooks/generic":
            raise httpx.ConnectError("refused")
        return httpx.Response(202, json={"outcome": "accepted"}, headers={"x-extra": "kept"})

    class DiskFull(FixtureWriter):
        full = False

        def write(self, *args: Any) -> Path:
            if self.full:
                raise OSError(28, "No space left on device")
            return super().write(*args)

    writer = DiskFull(tmp_path / "rec", Scrubber())
    writer.check_empty()
    app = create_recorder_app(
        writer,
        forward="http://127.0.0.1:9",
        secrets=SourceSecrets(),
        transport=httpx.MockTransport(stand_in),
    )
    body = b'{"ticket_id": "1", "requester_email": "jane@x.example"}'
    good = {"content-type": "application/json", "authorization": "Bearer good"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client,
    ):
        accepted = await client.post("/webhooks/freshdesk?x=1", content=body, headers=good)
        refused = await client.post(
            "/webhooks/zendesk", content=body, headers=good | {"authorization": "Bearer bad"}
        )
        unreachable = await client.post("/webhooks/generic", content=body, headers=good)
        writer.full = True  # the next fixture cannot be written...
        unwritable = await client.post("/webhooks/freshdesk", content=body, headers=good)
    assert (accepted.status_code, accepted.json(), accepted.headers["x-extra"]) == (
        202,
        {"outcome": "accepted"},
        "kept",
    )
    assert seen[0].content == body  # forwarded unchanged, query string and all
    assert seen[0].url.query == b"x=1"
    assert refused.status_code == 401
    assert unreachable.status_code == 502
    assert unwritable.status_code == 202  # ...which does not change the service's answer
    assert [p.name for p in (tmp_path / "rec").iterdir()] == ["0001-freshdesk.json"]
