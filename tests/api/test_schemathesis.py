"""schemathesis against the committed ``openapi.yaml``, in process.

Every operation in the document gets generated requests (valid and invalid bodies, headers,
path and query values) sent to the ASGI app. Each response must be no server error, a status
code the document lists for the operation, that status' content type, and a body matching its
schema. The ``/v1`` routes get the admin token so they answer beyond 401; a webhook case
generated as valid gets credentials that pass (Basic for Freshdesk, a signature over the exact
bytes sent for Zendesk and Standard Webhooks), so the parsers and the store see it, while
invalid ones (headers missing or malformed) go unsigned and are refused.

Bounded for CI: at most ``MAX_EXAMPLES`` generated cases per operation (plus schemathesis'
coverage cases), derandomized so every run sends the same requests, no per-example deadline
(the machine is shared and noisy); the file takes about ten seconds. schemathesis starts the app's
lifespan on the first request and its pytest plugin ends it when the test item ends, while
the fixtures (the store) still exist.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_settings
from tests.e2e.test_signed_sources import SIGNED, standard_headers, zendesk_headers
from ticketbridge.adapters.store.engine import Store
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.http.app import create_app
from ticketbridge.rules import Policy

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")


@pytest.fixture
def app(tmp_path: Path, clock: FakeClock, policy: Policy) -> Any:
    """The app on a migrated SQLite store of its own; no workers, effects stay in the outbox."""
    store = Store(f"sqlite:///{tmp_path / 'tb.db'}", sqlite_synchronous="OFF")
    store.migrate()
    settings_ = make_settings(**SIGNED)
    services = Services(settings=settings_, store=store, policy=policy, clock=clock)
    services.fast_path = False  # nothing leaves the process: no VictorOps call from a webhook
    yield create_app(settings_, services=services, start_workers=False)
    store.close()


def as_bytes(body: str | bytes | None) -> bytes:
    return body.encode() if isinstance(body, str) else (body or b"")


def body_bytes(case: schemathesis.Case) -> bytes:
    """The body exactly as the transport will send it (requests serializes it)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    fields = ("method", "url", "headers", "params", "data", "json", "cookies")
    return as_bytes(
        requests.Request(**{k: v for k, v in kwargs.items() if k in fields}).prepare().body
    )


def credentials(case: schemathesis.Case, clock: FakeClock) -> tuple[dict[str, str], bytes | None]:
    """Headers that authenticate ``case``, and the body they sign (None: nothing signed)."""
    path = case.operation.path
    if not path.startswith("/webhooks/"):
        return ADMIN, None
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return {}, None  # as generated: missing or malformed credentials
    if path == "/webhooks/freshdesk":
        basic = base64.b64encode(f"freshdesk:{WEBHOOK_SECRET}".encode()).decode()
        return {"authorization": f"Basic {basic}"}, None
    raw = body_bytes(case)
    if path == "/webhooks/zendesk":
        signed = zendesk_headers(raw, clock)
    else:  # one webhook-id per distinct body: a repeated body is a duplicate delivery
        signed = standard_headers(raw, clock, f"msg_{hashlib.sha256(raw).hexdigest()[:24]}")
    signed.pop("content-type")  # the generated one stays: it may be wrong on purpose
    return signed, raw


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    # One app and store per operation, on purpose: what earlier cases stored stays (duplicates).
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_api_conforms_to_openapi_yaml(case: schemathesis.Case, app: Any, clock: FakeClock) -> None:
    headers, signed = credentials(case, clock)
    response = case.call(app=app, headers=headers)
    if signed is not None:
        assert as_bytes(response.request.body) == signed, "the signature covers other bytes"
    case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs={"app": app})


@pytest.mark.parametrize(
    ("path", "method", "parameters"),
    [
        ("/v1/effects", "GET", {"query": {"before_id": 2**63}}),
        ("/v1/effects/{effect_id}/retry", "POST", {"path_parameters": {"effect_id": 2**31}}),
    ],
)
def test_ids_beyond_the_id_column_are_422_not_a_store_error(
    path: str, method: str, parameters: dict[str, Any], app: Any
) -> None:
    """Schemathesis found these answering 500 (the store's integer overflowed)."""
    case = schema[path][method].Case(**parameters)
    assert case.call(app=app, headers=ADMIN).status_code == 422
