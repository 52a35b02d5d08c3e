"""Any body a correctly authenticated sender posts is answered 2xx or 4xx, in JSON: never 5xx.

Hypothesis generates the bodies of all three webhook routes from a valid one: fields changed
to any JSON value (nested objects, wrong types, huge integers, digits outside ASCII such as
"²", "①" or "١٢٣"), dropped, or added; each request carries valid credentials (Freshdesk's
Basic password, a Zendesk signature, a Standard Webhooks signature), so the body is what gets
past the door and reaches the parsers and the rules, then the store. The run is derandomized
and bounded (a fixed example budget per route and backend) so it fits the normal test run.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections import Counter
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import WEBHOOK_SECRET, freshdesk_body
from tests.e2e.test_signed_sources import (
    SIGNED,
    generic_body,
    standard_headers,
    zendesk_body,
    zendesk_headers,
)
from ticketbridge.app.clock import FakeClock

EXAMPLES = 250  # per route and backend: about 3 s each on a shared 2-core machine

# Digits Python's str.isdigit() and int() accept that no helpdesk writes in an id.
UNICODE_DIGITS = ["²", "①", "١٢٣", "\uff11\uff12", "߁", "\U0001d7d7", "٣", "1²", "१२३"]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63), 10**30, 10**400, -1, 0])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = st.one_of(
    st.sampled_from(UNICODE_DIGITS),
    st.sampled_from(UNICODE_DIGITS).map(lambda d: {"id": d}),
    json_values,
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=4),
)

VALID: dict[str, dict[str, Any]] = {
    "freshdesk": freshdesk_body(11)["freshdesk_webhook"],
    "zendesk": zendesk_body(11)["zendesk_webhook"],
    "generic": generic_body("T-11"),
}
WRAPPERS = {"freshdesk": "freshdesk_webhook", "zendesk": "zendesk_webhook", "generic": None}


@st.composite
def mutated(draw: st.DrawFn, source: str) -> bytes:
    """A valid body of ``source`` with up to three fields changed, two dropped, one added."""
    valid = VALID[source]
    names = st.sampled_from(sorted(valid))
    changed = draw(st.dictionaries(names, field_values, max_size=3))
    dropped = draw(st.sets(names, max_size=2))
    added = draw(st.dictionaries(st.text(max_size=12), json_values, max_size=1))
    inner = {k: v for k, v in {**valid, **added, **changed}.items() if k not in dropped}
    wrapper = WRAPPERS[source]
    document: Any = {wrapper: inner} if wrapper and draw(st.booleans()) else inner
    if draw(st.integers(0, 19)) == 0:  # now and then the whole document is any JSON
        document = draw(json_values)
    ascii_only = draw(st.booleans())
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def authenticated(source: str, raw: bytes, clock: FakeClock, msg_id: str) -> dict[str, str]:
    if source == "freshdesk":
        token = base64.b64encode(f"freshdesk:{WEBHOOK_SECRET}".encode()).decode()
        return {"content-type": "application/json", "authorization": f"Basic {token}"}
    if source == "zendesk":
        return zendesk_headers(raw, clock)
    return standard_headers(raw, clock, msg_id)


@pytest.mark.parametrize("source", ["freshdesk", "zendesk", "generic"])
def test_any_authenticated_body_is_answered_2xx_or_4xx_in_json_never_5xx(
    harness_factory: Any, clock: FakeClock, source: str
) -> None:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    ids = itertools.count()
    with asyncio.Runner() as runner, respx.mock(assert_all_called=False) as vo:
        vo.route(host="vo.test").mock(return_value=httpx.Response(200, json={"result": "ok"}))
        harness_cm = harness_factory(**SIGNED)
        h = runner.run(harness_cm.__aenter__())
        try:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(raw=mutated(source))
            def post_one(raw: bytes) -> None:
                headers = authenticated(source, raw, clock, f"msg_{next(ids)}")
                response = runner.run(
                    h.client.post(f"/webhooks/{source}", content=raw, headers=headers)
                )
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    failures.append(f"{response.status_code} for {raw[:200]!r}")
                assert response.status_code < 500, (response.status_code, raw[:300])
                assert response.headers["content-type"] == "application/json"
                assert isinstance(response.json(), dict)

            post_one()
        finally:
            runner.run(harness_cm.__aexit__(None, None, None))
    print(f"fuzz {source}: {sum(statuses.values())} requests, {dict(sorted(statuses.items()))}")
    assert not failures
    # The run reached the rules and the store, and the refusals.
    assert statuses[202]
    assert statuses[422]
