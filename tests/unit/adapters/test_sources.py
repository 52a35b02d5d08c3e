"""The Source table: what a sender signs is what the service verifies, and nothing else is."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from ticketbridge.adapters.inbound.errors import Unauthorized
from ticketbridge.adapters.inbound.sources import SOURCES, first_headers

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SECRETS = {
    "freshdesk": "fd-secret",
    "zendesk": "zd-secret",
    "generic": "whsec_" + base64.b64encode(b"generic-secret").decode(),
}
BODY = b'{"x": 1}'


def _signed(name: str, secret: str) -> dict[bytes, bytes]:
    headers: dict[str, str] = {}
    SOURCES[name].sign(BODY, headers, secret, NOW)
    assert set(headers) <= set(SOURCES[name].headers)
    return {k.encode(): v.encode("latin-1") for k, v in headers.items()}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_a_signed_request_verifies_with_the_same_secret_only(name: str) -> None:
    source = SOURCES[name]
    keys = [source.key(SECRETS[name])]
    source.verify(_signed(name, SECRETS[name]), BODY, keys, NOW)
    other = (
        SECRETS[name].replace("secret", "other") if name != "generic" else SECRETS["generic"][:-4]
    )
    with pytest.raises(Unauthorized):
        source.verify(_signed(name, other), BODY, keys, NOW)


@pytest.mark.parametrize("name", ["zendesk", "generic"])
def test_a_body_signature_fails_on_another_body_or_without_a_time(name: str) -> None:
    source = SOURCES[name]
    keys = [source.key(SECRETS[name])]
    headers = _signed(name, SECRETS[name])
    with pytest.raises(Unauthorized):
        source.verify(headers, BODY + b" ", keys, NOW)
    with pytest.raises(Unauthorized):
        source.verify(headers, BODY, keys, None)


def test_first_headers_keeps_the_first_of_each_name() -> None:
    raw = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]
    assert first_headers(raw) == {b"a": b"1", b"b": b"2"}
    assert first_headers(iter(raw)) == {b"a": b"1", b"b": b"2"}
