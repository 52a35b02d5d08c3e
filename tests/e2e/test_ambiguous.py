"""VictorOps acts, then the reply is lost (an ambiguous timeout): still one incident."""

from __future__ import annotations

from typing import Any

from tests.conftest import freshdesk_body
from tests.fakes.victorops import FakeVictorOps, Fault


async def test_an_ambiguous_failure_is_retried_into_the_same_incident(
    harness_factory: Any, clock: Any
) -> None:
    with FakeVictorOps() as vo:
        # The first page is applied, then the connection drops before any answer.
        vo.schedule(Fault(act=True, drop=True))
        async with harness_factory(victorops={"rest_url": vo.rest_url()}) as h:
            await h.post_freshdesk(freshdesk_body(95))
            await h.dispatcher.run_once()
            first = (await h.ticket(95))["effects"][0]
            clock.advance(120)
            await h.dispatcher.run_once()
            effect = (await h.ticket(95))["effects"][0]
        opened = vo.incidents_opened()
        requests = vo.request_count
    figure = (
        f"ambiguous timeout: distinct incidents {len(opened)}, "
        f"pages of ticket 95 {opened['freshdesk/acme/ticket/95']}, requests {requests}"
    )
    print(figure)
    assert first["status"] == "retrying", figure
    assert effect["status"] == "sent", figure
    assert requests == 2, figure
    assert opened["freshdesk/acme/ticket/95"] == 1, figure
