"""`make screenshots`: a PNG of each console page into docs/console/, from a seeded data set.

A throwaway SQLite store, the injected clock and a fake VictorOps (which fails one page with a
400, so Dead letters has one); tickets of every priority at different ages, one engaged, one
Pending, one breached. Served on 127.0.0.1 and shot with Debian's Chromium (headless).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' fake vendor and server helpers are reused

from tests.console.server import chromium, serving, wait_until  # noqa: E402
from tests.fakes.victorops import FakeVictorOps, Fault  # noqa: E402

from ticketbridge.adapters.store.engine import Store  # noqa: E402
from ticketbridge.app.bootstrap import Services  # noqa: E402
from ticketbridge.app.clock import FakeClock  # noqa: E402
from ticketbridge.app.http.app import create_app  # noqa: E402
from ticketbridge.app.policy_file import load_policy  # noqa: E402
from ticketbridge.app.settings import Settings  # noqa: E402

OUT = ROOT / "docs" / "console"
SECRET = "screenshots-webhook-secret"  # noqa: S105 (a throwaway local server)
ADMIN = "screenshots-admin-token"
WHAT_IF = """events:
  - {at: 0m, event: created, priority: urgent, status: open}
  - {at: 20m, event: agent_reply}
  - {at: 45m, status: resolved}
"""
SUBJECTS = [
    ("Urgent", "Checkout fails for every EU customer"),
    ("Urgent", "Payments API returns 502"),
    ("High", "Login emails delayed by 20 minutes"),
    ("High", "Search results empty for some tenants"),
    ("Medium", "CSV export times out on large accounts"),
    ("Medium", "Dashboard chart shows yesterday's data"),
    ("Low", "Typo in the invoice footer"),
    ("Low", "Dark mode contrast on settings page"),
]


def _webhook(url: str, ticket_id: int, priority: str, subject: str, **extra: str) -> None:
    inner = {
        "triggered_event": "{ticket_action:created}",
        "ticket_id": str(ticket_id),
        "ticket_url": f"https://acme.freshdesk.com/helpdesk/tickets/{ticket_id}",
        "ticket_type": "Incident",
        "ticket_subject": subject,
        "ticket_status": "Open",
        "ticket_priority": priority,
        **extra,
    }
    answer = httpx.post(
        f"{url}/webhooks/freshdesk",
        json={"freshdesk_webhook": inner},
        auth=("freshdesk", SECRET),
    )
    answer.raise_for_status()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    clock = FakeClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as tmp, FakeVictorOps() as vo:
        store = Store(f"sqlite:///{tmp}/shots.db", sqlite_synchronous="OFF")
        store.migrate()
        settings = Settings.model_validate(
            {
                "database_url": f"sqlite:///{tmp}/shots.db",
                "admin_token": ADMIN,
                "freshdesk": {"webhook_secrets": [SECRET]},
                "victorops": {"rest_url": vo.rest_url()},
            }
        )
        services = Services(settings=settings, store=store, policy=load_policy(None), clock=clock)
        app = create_app(settings, services=services, start_workers=True)
        with serving(app) as url:
            vo.schedule(Fault(status=400))
            for n, (priority, subject) in enumerate(SUBJECTS):
                _webhook(url, 1040 + n, priority, subject)
                clock.advance(timedelta(minutes=9))
            wait_until(lambda: store.outbox_stats().dead == 1, what="the dead page")
            wait_until(lambda: store.outbox_stats().open == 0, what="the outbox to drain")
            with chromium() as browser:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{url}/ui/login")
                page.screenshot(path=str(OUT / "login.png"))
                page.fill("#token", ADMIN)
                page.click("button[type=submit]")
                page.wait_for_url(f"{url}/ui/")
                page.screenshot(path=str(OUT / "now.png"), full_page=True)
                page.goto(f"{url}/ui/tickets")
                page.screenshot(path=str(OUT / "tickets.png"), full_page=True)
                page.goto(f"{url}/ui/tickets/freshdesk/1040")
                page.screenshot(path=str(OUT / "ticket.png"), full_page=True)
                page.goto(f"{url}/ui/dead-letters")
                page.screenshot(path=str(OUT / "dead-letters.png"), full_page=True)
                page.goto(f"{url}/ui/policy")
                page.fill("#timeline", WHAT_IF)
                page.click("button:has-text('Simulate')")
                page.screenshot(path=str(OUT / "policy.png"))
                phone = browser.new_page(viewport={"width": 390, "height": 844})
                phone.context.add_cookies(page.context.cookies())
                phone.goto(f"{url}/ui/")
                phone.screenshot(path=str(OUT / "now-phone.png"))
        store.close()
    print(f"screenshots: {', '.join(sorted(p.name for p in OUT.glob('*.png')))} in docs/console/")


if __name__ == "__main__":
    main()
