"""Signature verifiers: the forged/valid matrix, malformed headers, any input under Hypothesis."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketbridge.adapters.inbound.errors import Unauthorized
from ticketbridge.adapters.inbound.signatures import (
    standard_secret,
    standard_signature,
    verify_standard,
    verify_zendesk,
    zendesk_signature,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OLD = b"zendesk-old-secret"
NEW = b"zendesk-new-secret"
WH_OLD = "whsec_" + base64.b64encode(b"standard-old-key-0123456789").decode()
WH_NEW = "whsec_" + base64.b64encode(b"standard-new-key-9876543210").decode()
BODY = json.dumps({"ticket_id": "11", "ticket_priority": "Urgent"}).encode()
RESERIALISED = json.dumps(json.loads(BODY), indent=2).encode()


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def flip(text: str) -> str:
    """The base64 signature with one bit of its digest flipped."""
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --- Zendesk: each case signs with some secret and time, then verifies ---------------------

ZendeskCase = tuple[bytes, datetime, Callable[[str, str, bytes], tuple[str, str, bytes]], bool]


def _same(sig: str, ts: str, body: bytes) -> tuple[str, str, bytes]:
    return sig, ts, body


ZENDESK_CASES: dict[str, ZendeskCase] = {
    "valid, new secret": (NEW, NOW, _same, True),
    "valid, old secret (rotation)": (OLD, NOW, _same, True),
    "wrong secret": (b"not-a-configured-secret", NOW, _same, False),
    "one flipped bit": (NEW, NOW, lambda s, t, b: (flip(s), t, b), False),
    "tampered timestamp": (
        NEW,
        NOW,
        lambda s, t, b: (s, iso(NOW + timedelta(seconds=1)), b),
        False,
    ),
    "tampered body": (NEW, NOW, lambda s, t, b: (s, t, b.replace(b"Urgent", b"Low")), False),
    "re-serialised JSON": (NEW, NOW, lambda s, t, b: (s, t, RESERIALISED), False),
    "signed 299 s ago": (NEW, NOW - timedelta(seconds=299), _same, True),
    "signed 299 s ahead": (NEW, NOW + timedelta(seconds=299), _same, True),
    "signed 301 s ago": (NEW, NOW - timedelta(seconds=301), _same, False),
    "signed 301 s ahead": (NEW, NOW + timedelta(seconds=301), _same, False),
    "hex instead of base64": (
        NEW,
        NOW,
        lambda s, t, b: (base64.b64decode(s).hex(), t, b),
        False,
    ),
}


def zendesk_accepts(case: ZendeskCase) -> bool:
    secret, signed_at, tamper, _ = case
    ts = iso(signed_at)
    sig, ts, body = tamper(zendesk_signature(secret, ts, BODY), ts, BODY)
    try:
        verify_zendesk(body=body, signature=sig, timestamp=ts, secrets=[OLD, NEW], now=NOW)
    except Unauthorized:
        return False
    return True


# --- Standard Webhooks ----------------------------------------------------------------------

StandardCase = tuple[list[str], datetime, Callable[[dict[str, Any]], None], bool]


def _none(headers: dict[str, Any]) -> None:
    return None


def _set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda headers: headers.update(changes)


def _flip_sig(headers: dict[str, Any]) -> None:
    version, _, value = headers["signature"].partition(",")
    headers["signature"] = f"{version},{flip(value)}"


STANDARD_CASES: dict[str, StandardCase] = {
    "valid, new secret": ([WH_NEW], NOW, _none, True),
    "valid, old secret (rotation)": ([WH_OLD], NOW, _none, True),
    "several signatures, one valid": (
        ["whsec_" + base64.b64encode(b"unknown").decode(), WH_NEW],
        NOW,
        _none,
        True,
    ),
    "wrong secret": (["whsec_" + base64.b64encode(b"unknown").decode()], NOW, _none, False),
    "one flipped bit": ([WH_NEW], NOW, _flip_sig, False),
    "tampered timestamp": ([WH_NEW], NOW, _set(timestamp=str(int(NOW.timestamp()) + 1)), False),
    "tampered id": ([WH_NEW], NOW, _set(msg_id="msg_other"), False),
    "tampered body": ([WH_NEW], NOW, _set(body=BODY.replace(b"Urgent", b"Low")), False),
    "re-serialised JSON": ([WH_NEW], NOW, _set(body=RESERIALISED), False),
    "signed 299 s ago": ([WH_NEW], NOW - timedelta(seconds=299), _none, True),
    "signed 299 s ahead": ([WH_NEW], NOW + timedelta(seconds=299), _none, True),
    "signed 301 s ago": ([WH_NEW], NOW - timedelta(seconds=301), _none, False),
    "signed 301 s ahead": ([WH_NEW], NOW + timedelta(seconds=301), _none, False),
    "wrong version": (
        [WH_NEW],
        NOW,
        lambda h: h.update(signature="v2" + h["signature"][2:]),
        False,
    ),
}


def standard_accepts(case: StandardCase) -> bool:
    secrets, signed_at, tamper, _ = case
    ts = str(int(signed_at.timestamp()))
    headers: dict[str, Any] = {
        "msg_id": "msg_2Kx1",
        "timestamp": ts,
        "body": BODY,
        "signature": " ".join(
            standard_signature(standard_secret(s), "msg_2Kx1", ts, BODY) for s in secrets
        ),
    }
    tamper(headers)
    try:
        verify_standard(
            body=headers["body"],
            msg_id=headers["msg_id"],
            timestamp=headers["timestamp"],
            signature=headers["signature"],
            keys=[standard_secret(WH_OLD), standard_secret(WH_NEW)],
            now=NOW,
        )
    except Unauthorized:
        return False
    return True


def test_signature_matrix_forged_accepted_0_valid_rejected_0() -> None:
    results = [(name, zendesk_accepts(c), c[3]) for name, c in ZENDESK_CASES.items()] + [
        (name, standard_accepts(c), c[3]) for name, c in STANDARD_CASES.items()
    ]
    forged_accepted = [name for name, accepted, valid in results if accepted and not valid]
    valid_rejected = [name for name, accepted, valid in results if valid and not accepted]
    print(f"forged accepted {len(forged_accepted)}, valid rejected {len(valid_rejected)}")
    assert (forged_accepted, valid_rejected) == ([], [])
    assert len(results) == len(ZENDESK_CASES) + len(STANDARD_CASES)


@pytest.mark.parametrize("name", list(ZENDESK_CASES))
def test_zendesk_case(name: str) -> None:
    assert zendesk_accepts(ZENDESK_CASES[name]) is ZENDESK_CASES[name][3]


@pytest.mark.parametrize("name", list(STANDARD_CASES))
def test_standard_case(name: str) -> None:
    assert standard_accepts(STANDARD_CASES[name]) is STANDARD_CASES[name][3]


def test_no_secret_or_an_empty_one_never_verifies() -> None:
    ts = iso(NOW)
    sig = zendesk_signature(b"", ts, BODY)
    for secrets in ([], [b""]):
        with pytest.raises(Unauthorized):
            verify_zendesk(body=BODY, signature=sig, timestamp=ts, secrets=secrets, now=NOW)
    stamp = str(int(NOW.timestamp()))
    with pytest.raises(Unauthorized):
        verify_standard(
            body=BODY,
            msg_id="m",
            timestamp=stamp,
            signature=standard_signature(b"", "m", stamp, BODY),
            keys=[b""],
            now=NOW,
        )


def test_standard_secret_needs_base64() -> None:
    assert standard_secret("whsec_" + base64.b64encode(b"k").decode()) == b"k"
    assert standard_secret(base64.b64encode(b"k").decode()) == b"k"
    for bad in ("whsec_", "whsec_!!!", "not base64 at all", ""):
        with pytest.raises(ValueError, match="base64"):
            standard_secret(bad)


# --- malformed headers are Unauthorized, never anything else ------------------------------

MALFORMED = {
    "missing": None,
    "empty": "",
    "no comma": "v1" + zendesk_signature(NEW, iso(NOW), BODY),
    "bad base64": "v1,!!!not-base64!!!",
    "non-ASCII": "v1,\xff\xfe\u00e9",
    "64 KiB": "v1," + "A" * 65536,
    "many entries": " ".join(["v1,AAAA"] * 5000),
    "control characters": "v1,\x00\x01",
}


@pytest.mark.parametrize("value", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_headers_are_unauthorized(value: str | None) -> None:
    stamp = str(int(NOW.timestamp()))
    keys = [standard_secret(WH_NEW)]
    attempts: list[Callable[[], None]] = [
        lambda: verify_zendesk(
            body=BODY, signature=value, timestamp=iso(NOW), secrets=[NEW], now=NOW
        ),
        lambda: verify_zendesk(
            body=BODY,
            signature=zendesk_signature(NEW, iso(NOW), BODY),
            timestamp=value,
            secrets=[NEW],
            now=NOW,
        ),
        lambda: verify_standard(
            body=BODY, msg_id="m", timestamp=stamp, signature=value, keys=keys, now=NOW
        ),
        lambda: verify_standard(
            body=BODY,
            msg_id=value,
            timestamp=stamp,
            signature=standard_signature(keys[0], "m", stamp, BODY),
            keys=keys,
            now=NOW,
        ),
        lambda: verify_standard(
            body=BODY,
            msg_id="m",
            timestamp=value,
            signature=standard_signature(keys[0], "m", stamp, BODY),
            keys=keys,
            now=NOW,
        ),
    ]
    for attempt in attempts:
        with pytest.raises(Unauthorized):
            attempt()


@pytest.mark.parametrize(
    "timestamp",
    ["yesterday", "9999-99-99T99:99:99Z", "0001-01-01T00:00:00+14:00", "-1", "1e9", "9" * 40],
)
def test_odd_timestamps_are_unauthorized(timestamp: str) -> None:
    with pytest.raises(Unauthorized):
        verify_zendesk(
            body=BODY,
            signature=zendesk_signature(NEW, timestamp, BODY),
            timestamp=timestamp,
            secrets=[NEW],
            now=NOW,
        )
    with pytest.raises(Unauthorized):
        verify_standard(
            body=BODY,
            msg_id="m",
            timestamp=timestamp,
            signature=standard_signature(b"k", "m", timestamp, BODY),
            keys=[b"k"],
            now=NOW,
        )


# --- for any input, only the verifier's own error -----------------------------------------

header = st.one_of(st.none(), st.text(max_size=300), st.from_regex(r"v1,[A-Za-z0-9+/=]{0,60}"))


# No input drawn here carries a valid signature, so each must be refused, and only with
# Unauthorized (a 401), never another error (a 500).


@given(body=st.binary(max_size=512), signature=header, timestamp=header)
def test_zendesk_refuses_any_unsigned_input_with_unauthorized_only(
    body: bytes, signature: str | None, timestamp: str | None
) -> None:
    with pytest.raises(Unauthorized):
        verify_zendesk(
            body=body, signature=signature, timestamp=timestamp, secrets=[NEW, b""], now=NOW
        )


@given(body=st.binary(max_size=512), msg_id=header, timestamp=header, signature=header)
def test_standard_refuses_any_unsigned_input_with_unauthorized_only(
    body: bytes, msg_id: str | None, timestamp: str | None, signature: str | None
) -> None:
    with pytest.raises(Unauthorized):
        verify_standard(
            body=body,
            msg_id=msg_id,
            timestamp=timestamp,
            signature=signature,
            keys=[standard_secret(WH_NEW)],
            now=NOW,
        )
