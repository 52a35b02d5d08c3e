"""The webhook path's shortcuts read what the slow reads would."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from ticketbridge.app.http.deps import from_state
from ticketbridge.app.http.direct import EncodedKeys


def test_encoded_secrets_follow_a_list_changed_in_place() -> None:
    cache = EncodedKeys(str.encode)
    secrets = [SecretStr("first")]
    assert cache.of(secrets) == [b"first"]
    secrets.append(SecretStr("rotated"))
    assert cache.of(secrets) == [b"first", b"rotated"]
    secrets[0] = SecretStr("replaced")
    assert cache.of(secrets) == [b"replaced", b"rotated"]
    secrets.clear()
    assert cache.of(secrets) == []


def test_from_state_reads_app_state_and_a_missing_name_raises_as_before() -> None:
    app = Starlette()
    app.state.services = marker = object()
    assert from_state(app, "services") is marker
    with pytest.raises(AttributeError, match="dispatcher"):
        from_state(app, "dispatcher")
