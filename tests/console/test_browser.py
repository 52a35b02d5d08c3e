"""The console in a real browser (Debian's Chromium, headless, driven by Playwright)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN, freshdesk_body
from tests.console.conftest import VIEWER_TOKEN, Served, sign_in, wait_for
from tests.fakes.victorops import Fault
from ticketbridge.app.clock import FakeClock

SHOTS = "/tmp"


def test_sign_in_shows_now_and_sign_out_returns_to_login(
    serve: Callable[..., Served], page: Any
) -> None:
    served = serve()
    page.goto(f"{served.url}/ui/")
    assert page.url == f"{served.url}/ui/login"
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("[role=alert]")
    page.screenshot(path=f"{SHOTS}/console-login.png")
    sign_in(page, served)
    assert page.inner_text("h1") == "Now"
    page.click("text=Sign out")
    page.wait_for_url(f"{served.url}/ui/login")
    page.goto(f"{served.url}/ui/")
    assert page.url == f"{served.url}/ui/login"


def test_an_urgent_webhook_appears_on_now_with_its_countdown(
    serve: Callable[..., Served], page: Any, clock: FakeClock
) -> None:
    served = serve()
    assert served.post_freshdesk(freshdesk_body(41, priority="Urgent")).status_code == 202
    assert served.post_freshdesk(freshdesk_body(42, priority="Low")).status_code == 202
    clock.advance(timedelta(minutes=18))
    sign_in(page, served)
    row = page.locator("tr", has=page.locator("a", has_text="freshdesk/41"))
    text = row.inner_text()
    assert "Tier-One expires in 12 min → bridge" in text or "engagement" in text, text
    urgent = page.locator("section", has=page.locator("#g-urgent")).inner_text()
    assert "1 open" in urgent
    page.screenshot(path=f"{SHOTS}/console-now.png", full_page=True)
    # Past the engagement window (an hour for Urgent) nobody engaged: the ticket is marked
    # breached, on top, once the scheduler has fired the engagement timer.
    clock.advance(timedelta(minutes=45))

    def breached() -> bool:
        page.reload()
        text = page.inner_text("#g-urgent + table")
        return "BREACHED" in text and "engagement breached" in text

    wait_for(breached, what="the breach on Now")
    page.screenshot(path=f"{SHOTS}/console-now-breached.png", full_page=True)
    page.click("a:has-text('freshdesk/41')")
    assert "Commitments" in page.content()
    assert ADMIN_TOKEN not in page.content()
    page.screenshot(path=f"{SHOTS}/console-ticket.png", full_page=True)


def test_a_dead_page_retried_from_dead_letters_ends_sent(
    serve: Callable[..., Served], page: Any
) -> None:
    served = serve()
    served.vo.schedule(Fault(status=400))
    assert served.post_freshdesk(freshdesk_body(7, priority="Urgent")).status_code == 202
    wait_for(lambda: served.services.store.outbox_stats().dead == 1, what="a dead effect")
    sign_in(page, served)
    page.click("nav >> text=Dead letters")
    assert "HTTP" in page.content() or "400" in page.inner_text("table")
    page.screenshot(path=f"{SHOTS}/console-dead-letters.png", full_page=True)
    page.click("tbody button:has-text('Retry')")
    page.wait_for_url("**/ui/dead-letters?retried=1*")
    assert "Replayed 1 effect" in page.inner_text("[role=status]")

    def sent() -> bool:
        view = served.services.store.ticket_view("freshdesk", "7")
        return view is not None and any(
            e["target"] == "victorops" and e["status"] == "sent" for e in view["effects"]
        )

    wait_for(sent, what="the replayed page to be sent")
    assert served.vo.requests[-1].status == 200
    assert served.services.store.outbox_stats().dead == 0


def test_a_viewer_sees_no_action_buttons_and_its_forged_post_is_refused(
    serve: Callable[..., Served], page: Any
) -> None:
    served = serve()
    served.vo.schedule(Fault(status=400))
    served.post_freshdesk(freshdesk_body(8, priority="Urgent"))
    wait_for(lambda: served.services.store.outbox_stats().dead == 1, what="a dead effect")
    sign_in(page, served, VIEWER_TOKEN)
    for path in ("/ui/", "/ui/dead-letters", "/ui/tickets/freshdesk/8", "/ui/tickets"):
        page.goto(f"{served.url}{path}")
        buttons = [b.strip() for b in page.locator("main button").all_inner_texts()]
        assert buttons in ([], ["Filter"]), (path, buttons)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = page.request.post(
        f"{served.url}/ui/dead-letters/retry", form={"csrf": csrf, "target": "victorops"}
    )
    assert answer.status == 403
    assert served.services.store.outbox_stats().dead == 1


def test_a_post_without_the_csrf_token_is_refused(serve: Callable[..., Served], page: Any) -> None:
    served = serve()
    sign_in(page, served)
    answer = page.request.post(f"{served.url}/ui/dead-letters/retry", form={"target": "x"})
    assert answer.status == 403
    forged = page.request.post(
        f"{served.url}/ui/dead-letters/retry", form={"csrf": "guess", "target": "x"}
    )
    assert forged.status == 403
    # Headers every page carries.
    response = httpx.get(f"{served.url}/ui/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


def test_the_what_if_form_shows_the_bridge_at_30_min_for_an_urgent_timeline(
    serve: Callable[..., Served], page: Any
) -> None:
    served = serve()
    sign_in(page, served, VIEWER_TOKEN)  # a simulation changes nothing: viewers may run one
    page.click("nav >> text=Policy")
    assert "Urgent" in page.inner_text("table")
    page.fill("#timeline", "events:\n  - {at: 0m, event: created, priority: urgent}\n")
    page.click("button:has-text('Simulate')")
    effects = page.inner_text("#what-if-effects")
    bridge = [line for line in effects.splitlines() if "bridge" in line]
    assert bridge, effects
    assert bridge[0].startswith("30m"), bridge
    page.screenshot(path=f"{SHOTS}/console-policy.png", full_page=True)
