"""Freshdesk's shared secret: compared byte-exact, after trimming only spaces and tabs."""

from __future__ import annotations

import base64
import hmac
from typing import Any

import pytest

from ticketbridge.adapters.inbound import auth
from ticketbridge.adapters.inbound.auth import check_shared_secret, presented_secret
from ticketbridge.adapters.inbound.errors import Unauthorized

SECRET = b"fd-secret"


def basic(password: bytes) -> str:
    return "Basic " + base64.b64encode(b"freshdesk:" + password).decode()


def accepted(authorization: str, secrets: list[bytes] | None = None) -> bool:
    try:
        check_shared_secret(authorization, secrets or [SECRET])
    except Unauthorized:
        return False
    return True


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer fd-secret",
        " \tBearer fd-secret \t ",
        "Bearer \t fd-secret\t",
        "bearer fd-secret",
        basic(SECRET),
        " " + basic(SECRET) + "\t",
    ],
)
def test_the_secret_with_spaces_or_tabs_around_it_is_accepted(authorization: str) -> None:
    assert accepted(authorization)


# What str.strip() also removes: NBSP and NEL (both single latin-1 bytes on the wire), other
# Unicode spaces, and ASCII control characters that are not HTTP whitespace.
NOT_HTTP_WHITESPACE = ["\xa0", "\x85", "\u2003", "\u3000", "\x0b", "\x0c", "\x1c"]


@pytest.mark.parametrize("extra", NOT_HTTP_WHITESPACE, ids=repr)
@pytest.mark.parametrize("where", ["after", "before"])
def test_a_bearer_token_with_other_whitespace_around_it_is_refused(extra: str, where: str) -> None:
    token = "fd-secret" + extra if where == "after" else extra + "fd-secret"
    assert token.strip() == "fd-secret"  # what the comparison used to see
    assert not accepted(f"Bearer {token}")


@pytest.mark.parametrize("extra", NOT_HTTP_WHITESPACE, ids=repr)
def test_a_basic_password_with_other_whitespace_after_it_is_refused(extra: str) -> None:
    assert not accepted(basic(SECRET + extra.encode("utf-8")))
    assert not accepted(basic(SECRET + b" "))  # inside the base64, even a space counts


def test_a_bearer_token_is_compared_as_the_bytes_that_arrived() -> None:
    # A server hands header bytes over decoded as latin-1: UTF-8 "é" arrives as "Ã©".
    secret = "clé".encode()
    assert accepted("Bearer " + secret.decode("latin-1"), [secret])
    assert not accepted("Bearer clé", [secret])  # the single byte 0xE9 is another secret
    assert presented_secret("Bearer " + secret.decode("latin-1")) == secret


def test_every_configured_secret_is_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, Any]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    secrets = [b"first", SECRET, b"third"]
    assert accepted("Bearer fd-secret", secrets)
    assert [b for _, b in calls] == secrets  # no early exit on the match
    calls.clear()
    assert not accepted("Bearer fd-secret\xa0", secrets)
    assert len(calls) == 3
