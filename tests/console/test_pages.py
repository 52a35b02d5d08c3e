"""The console over HTTP without a browser, on SQLite and PostgreSQL: access, limits, escaping,
secrets, and the read models' keyset pagination."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa

from tests.conftest import (
    ADMIN_TOKEN,
    VO_API_KEY,
    VO_URL,
    WEBHOOK_SECRET,
    AppHarness,
    freshdesk_body,
)
from tests.console.conftest import VIEWER_TOKEN
from ticketbridge.adapters.store import console as read
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.schema import outbox, tickets


async def _sign_in(h: AppHarness, token: str = ADMIN_TOKEN) -> httpx.Response:
    page = await h.client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return await h.client.post("/ui/login", data={"csrf": csrf.group(1), "token": token})


async def test_the_console_is_off_without_tokens(harness_factory: Callable[..., Any]) -> None:
    async with harness_factory(admin_token=None) as h:
        assert (await h.client.get("/ui/")).status_code == 404
        assert (await h.client.get("/ui/login")).status_code == 404


async def test_pages_redirect_to_sign_in_and_sign_in_is_rate_limited(
    harness_factory: Callable[..., Any],
) -> None:
    async with harness_factory(viewer_token=VIEWER_TOKEN) as h:
        for path in ("/ui/", "/ui/tickets", "/ui/dead-letters", "/ui/tickets/freshdesk/1"):
            answer = await h.client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"] == "/ui/login"
        codes = [(await _sign_in(h, "wrong")).status_code for _ in range(11)]
        assert codes == [401] * 10 + [429]
        assert (await _sign_in(h, VIEWER_TOKEN)).status_code == 429  # the limit holds


async def test_pages_escape_what_they_show_and_never_show_a_secret(
    harness_factory: Callable[..., Any], store: Store
) -> None:
    async with harness_factory(viewer_token=VIEWER_TOKEN) as h:
        body = freshdesk_body(5, ticket_subject="<script>alert(1)</script>")
        assert (await h.post_freshdesk(body)).status_code == 202
        with store.transaction() as conn:  # a vendor error quoting the REST URL
            conn.execute(
                sa.update(outbox).values(status="dead", last_error=f"POST {VO_URL} failed")
            )
        signed = await _sign_in(h)
        assert signed.status_code == 303
        for path in ("/ui/", "/ui/tickets", "/ui/dead-letters", "/ui/tickets/freshdesk/5"):
            page = await h.client.get(path)
            assert page.status_code == 200, path
            for secret in (ADMIN_TOKEN, VIEWER_TOKEN, VO_URL, VO_API_KEY, WEBHOOK_SECRET):
                assert secret not in page.text, (path, secret)
            assert "<script>alert" not in page.text
            assert page.headers["x-frame-options"] == "DENY"
        ticket = await h.client.get("/ui/tickets/freshdesk/5")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ticket.text
        assert "POST *** failed" in (await h.client.get("/ui/dead-letters")).text


def test_tickets_page_by_keyset_with_filters(store: Store) -> None:
    rows = [
        {
            "source": "freshdesk" if i % 2 else "zendesk",
            "ticket_id": str(i),
            "updated_at": 1000.0 + i // 10,  # ties: the keyset breaks them by source and id
            "state": {
                "priority": "urgent" if i % 3 == 0 else "low",
                "status": "open" if i % 4 else "closed",
                "subject": f"Subject {i}",
            },
        }
        for i in range(120)
    ]
    with store.transaction() as conn:
        conn.execute(sa.insert(tickets), rows)
    seen: list[str] = []
    after = None
    for _ in range(10):
        page, after = read.list_tickets(store, read.TicketFilter(), limit=50, after=after)
        seen.extend(f"{t.source}/{t.ticket_id}" for t in page)
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 120
    urgent_open, _ = read.list_tickets(
        store, read.TicketFilter(priority="urgent", status="active"), limit=200
    )
    assert {t.ticket_id for t in urgent_open} == {
        str(i) for i in range(120) if i % 3 == 0 and i % 4
    }
    found, _ = read.list_tickets(store, read.TicketFilter(search="subject 11"), limit=200)
    assert {t.ticket_id for t in found} == {
        "11",
        "110",
        "111",
        "112",
        "113",
        "114",
        "115",
        "116",
        "117",
        "118",
        "119",
    }


async def test_now_fragment_and_what_if_need_a_sign_in(
    harness_factory: Callable[..., Any],
) -> None:
    async with harness_factory() as h:
        page = await h.client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        anonymous = await h.client.post(
            "/ui/policy/what-if", data={"csrf": csrf.group(1), "timeline": "events: []"}
        )
        assert anonymous.status_code == 303
        assert (await h.client.get("/ui/fragments/now")).status_code == 303
        assert (await _sign_in(h)).status_code == 303
        fragment = await h.client.get("/ui/fragments/now")
        assert fragment.status_code == 200
        assert fragment.text.startswith('<div id="board"')
        assert "<html" not in fragment.text


async def test_ticket_page_links_out_from_what_the_vendors_answered(
    harness_factory: Callable[..., Any], store: Store
) -> None:
    """The links come from the sent effects' stored results; unsent effects give none."""
    async with harness_factory() as h:
        assert (await h.post_freshdesk(freshdesk_body(7))).status_code == 202
        with store.transaction() as conn:
            page = conn.execute(sa.select(outbox).where(outbox.c.kind == "page")).mappings().one()
            conn.execute(sa.update(outbox).values(status="sent", last_code=200))
            base = {k: v for k, v in page.items() if k != "id"} | {"status": "sent"}
            results = [
                (
                    "victorops_bridge",
                    "bridge",
                    {
                        "incident_number": "4242",
                        "bridge_phone": None,
                        "bridge_url": "https://meet.example.com/bridge",
                    },
                ),
                (
                    "github",
                    "write_up",
                    {
                        "issue_number": 17,
                        "issue_url": "https://github.com/acme/incidents/issues/17",
                    },
                ),
                (
                    "github",
                    "followup",
                    {
                        "issue_number": 18,
                        "issue_url": "https://github.com/acme/incidents/issues/18",
                    },
                ),
                (
                    "statuspage",
                    "open",
                    {
                        "incident_id": "p0x9",
                        "status": "investigating",
                        "shortlink": "https://stspg.io/p0x9",
                    },
                ),
            ]
            for target, kind, result in results:
                conn.execute(
                    sa.insert(outbox).values(
                        {
                            **base,
                            "key": f"{target}:{kind}",
                            "target": target,
                            "kind": kind,
                            "result": result,
                        }
                    )
                )
            conn.execute(  # a status-page incident never sent: no link
                sa.insert(outbox).values(
                    {
                        **base,
                        "key": "statuspage:open:2",
                        "target": "statuspage",
                        "kind": "open",
                        "status": "dead",
                        "result": {"incident_id": "unsent99"},
                    }
                )
            )
        assert (await _sign_in(h)).status_code == 303
        text = (await h.client.get("/ui/tickets/freshdesk/7")).text
        assert "VictorOps entity" in text
        assert "VictorOps incident</dt><dd>#4242" in text
        assert '<a href="https://meet.example.com/bridge"' in text
        assert '<a href="https://github.com/acme/incidents/issues/17"' in text
        assert "Write-up issue" in text
        assert "Follow-up issue" in text
        assert '<a href="https://stspg.io/p0x9"' in text
        assert "unsent99" not in text
        assert VO_URL not in text


def test_tickets_filter_breached_and_paged(store: Store) -> None:
    """Breached: a missed engagement, customer update or write-up; paged: paged at least once."""
    states: dict[str, dict[str, Any]] = {
        "calm": {},
        "engagement": {"engagement_breached": True, "page_generation": 1},
        "update": {"update_reminders": 2},
        "write-up": {"write_up_reminded": True, "page_generation": 2},
        "paged": {"page_generation": 1, "engagement_breached": False, "update_reminders": 0},
    }
    rows = [
        {
            "source": "freshdesk",
            "ticket_id": name,
            "updated_at": 1000.0 + i,
            "state": {"priority": "urgent", "status": "open", "subject": name, **extra},
        }
        for i, (name, extra) in enumerate(states.items())
    ]
    with store.transaction() as conn:
        conn.execute(sa.insert(tickets), rows)

    def ids(**flags: bool) -> set[str]:
        page, _ = read.list_tickets(store, read.TicketFilter(**flags), limit=50)
        return {t.ticket_id for t in page}

    assert ids(breached=True) == {"engagement", "update", "write-up"}
    assert ids(paged=True) == {"engagement", "write-up", "paged"}
    assert ids(breached=True, paged=True) == {"engagement", "write-up"}
    assert ids() == set(states)
