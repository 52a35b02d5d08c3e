"""Fixture recording and replay, sans I/O: scrubbing, the file format, spacing, re-signing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ticketbridge.adapters.inbound import freshdesk, generic, signatures, zendesk
from ticketbridge.adapters.inbound.auth import check_shared_secret
from ticketbridge.app.recording.fixtures import (
    Fixture,
    FixtureError,
    FixtureWriter,
    kept_headers,
    load_fixtures,
    read_fixture,
)
from ticketbridge.app.recording.proxy import SourceSecrets
from ticketbridge.app.recording.replay import (
    ReplaySecrets,
    gaps,
    replay,
    shift_event_time,
    shift_time_text,
    signed_request,
)
from ticketbridge.app.recording.scrub import Scrubber
from ticketbridge.rules.effects import NOTE_MARKER

FD_SECRET = "fd-secret-do-not-log"
ZD_SECRET = "zd-secret-do-not-log"
WH_SECRET = "whsec_" + base64.b64encode(b"generic-secret-do-not-log").decode()
SECRETS = ReplaySecrets(freshdesk=FD_SECRET, zendesk=ZD_SECRET, generic=WH_SECRET)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REPO_FIXTURES = Path(__file__).resolve().parents[3] / "examples" / "webhooks"


def freshdesk_inner(**extra: Any) -> dict[str, Any]:
    return {
        "triggered_event": "{ticket_action:created}",
        "ticket_id": "4711",
        "ticket_url": "https://acme.freshdesk.com/helpdesk/tickets/4711",
        "ticket_subject": "Checkout fails",
        "ticket_status": "Open",
        "ticket_priority": "Urgent",
        "ticket_updated_at": "2026-11-26T12:00:00Z",
        **extra,
    }


# --- scrubbing -------------------------------------------------------------------------------


def test_personal_fields_become_stable_placeholders() -> None:
    scrubber = Scrubber()
    first = scrubber.body(
        {
            "freshdesk_webhook": freshdesk_inner(
                requester_name="Jane Roe",
                requester_email="Jane.Roe@customer.example",
                requester_phone="+44 20 7946 0958",
                ticket_description="<div>Call me on +44 20 7946 0958, Jane</div>",
                ticket_agent_email="",
                ticket_tags="vip, jane.roe@customer.example",
            )
        }
    )["freshdesk_webhook"]
    assert first["requester_name"] == "name-1"
    assert first["requester_email"] == "person-1@example.invalid"
    assert first["requester_phone"] == "phone-1"
    assert first["ticket_description"] == "text-1"
    assert first["ticket_agent_email"] == ""  # empty means "unassigned": it stays empty
    assert first["ticket_tags"] == "vip, person-1@example.invalid"
    # Everything else as it was.
    for key in ("triggered_event", "ticket_id", "ticket_url", "ticket_subject"):
        assert first[key] == freshdesk_inner()[key]
    assert first["ticket_updated_at"] == "2026-11-26T12:00:00Z"

    # The same person again (any case): the same placeholder; someone else: a new one.
    second = scrubber.body(
        {
            "requester_email": "jane.roe@CUSTOMER.example",
            "ticket_agent_email": "max@acme.example",
            "requester_name": "Jane Roe",
        }
    )
    assert second == {
        "requester_email": "person-1@example.invalid",
        "ticket_agent_email": "person-2@example.invalid",
        "requester_name": "name-1",
    }


def test_scrubbing_is_deterministic_so_a_redelivery_stays_a_redelivery() -> None:
    scrubber = Scrubber()
    body = {"freshdesk_webhook": freshdesk_inner(requester_email="a@b.example")}
    one, two = scrubber.body(body), scrubber.body(body)
    assert freshdesk.dedup_key(one["freshdesk_webhook"]) == freshdesk.dedup_key(
        two["freshdesk_webhook"]
    )
    other = scrubber.body({"freshdesk_webhook": freshdesk_inner(requester_email="c@d.example")})
    assert one != other
    assert body["freshdesk_webhook"]["requester_email"] == "a@b.example"  # input untouched


def test_nested_people_lists_and_free_text_are_scrubbed() -> None:
    scrubbed = Scrubber().body(
        {
            "requester": {"name": "Jane Roe", "email": "jane@x.example", "id": 991},
            "ticket_cc_emails": ["a@x.example", "b@x.example"],
            "comments": [{"author": "Max Muster", "body": "hi", "created_at": "yesterday"}],
            "ticket_latest_private_comment": f"{NOTE_MARKER} Tier-Two bridge opened",
            "contact_mobile": 4915112345678,
            "assigned": True,
            "components": ["api"],
        }
    )
    assert scrubbed["requester"] == {
        "name": "name-1",
        "email": "person-1@example.invalid",
        "id": 991,
    }
    assert scrubbed["ticket_cc_emails"] == [
        "person-2@example.invalid",
        "person-3@example.invalid",
    ]
    assert scrubbed["comments"] == [{"author": "name-2", "body": "text-1", "created_at": "text-2"}]
    # ticketbridge recognises its own note by the marker: it survives scrubbing.
    assert scrubbed["ticket_latest_private_comment"] == f"{NOTE_MARKER} text-3"
    assert scrubbed["contact_mobile"] == "phone-1"
    assert scrubbed["assigned"] is True
    assert scrubbed["components"] == ["api"]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Checkout fails since 2026-11-26 12:00", "Checkout fails since 2026-11-26 12:00"),
        ("Order 1234567890 stuck", "Order 1234567890 stuck"),  # a bare number: not a phone
        ("Call back +1 (415) 555-0100 please", "Call back phone-1 please"),
        ("Call back 0170 1234567", "Call back phone-1"),
        ("Mail ops@acme.example now", "Mail person-1@example.invalid now"),
        ("Outage of v1.2.3 on 26.11.2026", "Outage of v1.2.3 on 26.11.2026"),
    ],
)
def test_subject_is_kept_but_addresses_and_phone_numbers_in_it_are_not(
    subject: str, expected: str
) -> None:
    assert Scrubber().body({"ticket_subject": subject}) == {"ticket_subject": expected}


def test_scrub_subject_replaces_the_subject_too() -> None:
    scrubber = Scrubber(scrub_subject=True)
    assert scrubber.body({"zendesk_webhook": {"ticket_subject": "Jane's shop is down"}}) == {
        "zendesk_webhook": {"ticket_subject": "subject-1"}
    }


def test_only_content_type_and_delivery_ids_are_kept_from_the_headers() -> None:
    headers = [
        ("Content-Type", "application/json"),
        ("Authorization", "Basic eDpmZC1zZWNyZXQ="),
        ("X-Zendesk-Webhook-Signature", "c2ln"),
        ("X-Zendesk-Webhook-Signature-Timestamp", "2026-11-26T12:00:00Z"),
        ("X-Zendesk-Webhook-Invocation-Id", "8350205582"),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "1790000000"),
        ("webhook-signature", "v1,c2ln"),
        ("Cookie", "session=1"),
        ("User-Agent", "Freshdesk"),
    ]
    assert kept_headers(headers) == {
        "content-type": "application/json",
        "x-zendesk-webhook-invocation-id": "8350205582",
        "webhook-id": "msg_1",
    }


def test_secrets_never_appear_in_a_repr() -> None:
    text = repr(SECRETS) + repr(SourceSecrets(freshdesk=(FD_SECRET,), zendesk=(ZD_SECRET,)))
    assert FD_SECRET not in text
    assert ZD_SECRET not in text
    assert WH_SECRET not in text


# --- the files -------------------------------------------------------------------------------


def test_writer_numbers_offsets_and_scrubs(tmp_path: Path) -> None:
    writer = FixtureWriter(tmp_path / "rec", Scrubber())
    writer.check_empty()
    wall = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    headers = [("content-type", "application/json"), ("authorization", "Basic x")]
    body = {"freshdesk_webhook": freshdesk_inner(requester_email="jane@x.example")}
    first = writer.write("freshdesk", headers, body, 100.0, wall)
    second = writer.write("zendesk", [], {"ticket_id": "1"}, 102.5, wall + timedelta(seconds=2.5))
    assert [first.name, second.name] == ["0001-freshdesk.json", "0002-zendesk.json"]
    document = json.loads(first.read_text(encoding="utf-8"))
    assert document == {
        "source": "freshdesk",
        "offset_seconds": 0.0,
        "recorded_at": "2026-11-26T09:00:00.000Z",
        "headers": {"content-type": "application/json"},
        "body": {"freshdesk_webhook": freshdesk_inner(requester_email="person-1@example.invalid")},
    }
    loaded = load_fixtures([tmp_path / "rec"])
    assert [f.offset_seconds for f in loaded] == [0.0, 2.5]
    assert loaded[1].recorded_at == wall + timedelta(seconds=2.5)
    assert not list((tmp_path / "rec").glob(".*"))  # no temporary file left behind
    with pytest.raises(FixtureError, match="empty directory"):
        FixtureWriter(tmp_path / "rec", Scrubber()).check_empty()


def test_a_directory_replays_in_number_order(tmp_path: Path) -> None:
    for number in (10000, 2, 9999, 1):
        (tmp_path / f"{number:04d}-generic.json").write_text(
            json.dumps({"source": "generic", "offset_seconds": number, "body": {}})
        )
    (tmp_path / "notes.txt").write_text("not a fixture")
    assert [f.path.name for f in load_fixtures([tmp_path])] == [
        "0001-generic.json",
        "0002-generic.json",
        "9999-generic.json",
        "10000-generic.json",
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[]", "a JSON object"),
        ("{", "not a readable JSON file"),
        ('{"source": "jira", "body": {}}', "source must be one of"),
        ('{"source": "generic", "offset_seconds": -1, "body": {}}', "offset_seconds"),
        ('{"source": "generic", "offset_seconds": true, "body": {}}', "offset_seconds"),
        ('{"source": "generic", "headers": {"a": 1}, "body": {}}', "headers"),
        ('{"source": "generic"}', "no body"),
        ('{"source": "generic", "recorded_at": "soon", "body": {}}', "recorded_at"),
    ],
)
def test_unusable_fixtures_are_refused_with_the_file_named(
    tmp_path: Path, document: str, message: str
) -> None:
    path = tmp_path / "0001-generic.json"
    path.write_text(document)
    with pytest.raises(FixtureError, match=message) as caught:
        read_fixture(path)
    assert str(path) in str(caught.value)


def test_the_repository_fixtures_are_valid_and_scrubbed() -> None:
    fixtures = load_fixtures([REPO_FIXTURES])
    assert [f.source for f in fixtures] == ["freshdesk", "zendesk", "freshdesk"]
    assert all(f.recorded_at is not None for f in fixtures)
    for fixture in fixtures:
        text = fixture.path.read_text(encoding="utf-8")
        assert "authorization" not in text.lower()
        assert "signature" not in text.lower()
        # Scrubbing a scrubbed fixture changes nothing: no personal data is left in it.
        assert Scrubber().body(fixture.body) == fixture.body
        body, _ = signed_request(fixture, SECRETS, NOW)
        parse = {"freshdesk": freshdesk.parse_webhook, "zendesk": zendesk.parse_webhook}
        parse[fixture.source](body)  # the service's parser takes it


# --- spacing ---------------------------------------------------------------------------------


def test_gaps_divide_by_speed_cap_and_compress() -> None:
    assert gaps([0, 2, 5], speed=2) == [0.0, 1.0, 1.5]
    assert gaps([0, 2, 5]) == [0.0, 2.0, 3.0]
    assert gaps([0, 2, 5], compress=True) == [0.0, 0.0, 0.0]
    assert gaps([0, 3600, 3605], max_wait=60) == [0.0, 60.0, 5.0]
    assert gaps([0, 7200], speed=10, max_wait=60) == [0.0, 60.0]
    assert gaps([5, 2]) == [0.0, 0.0]  # out of order: no wait
    assert gaps([]) == []
    with pytest.raises(ValueError, match="speed"):
        gaps([0, 1], speed=0)


class FakeTime:
    """A monotonic clock that only ``sleep`` and the requests move."""

    def __init__(self, request_seconds: float = 0.0) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.request_seconds = request_seconds
        self.sent: list[httpx.Request] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now

    def client(self, status: int = 202) -> httpx.Client:
        def answer(request: httpx.Request) -> httpx.Response:
            self.sent.append(request)
            self.now += self.request_seconds
            return httpx.Response(status, json={"outcome": "accepted", "ticket_id": "1"})

        return httpx.Client(base_url="http://127.0.0.1:9", transport=httpx.MockTransport(answer))


def generic_fixture(offset: float, **body: Any) -> Fixture:
    return Fixture(
        path=Path(f"{int(offset):04d}-generic.json"),
        source="generic",
        offset_seconds=offset,
        headers={"content-type": "application/json"},
        body={"source": "acme-desk", "ticket_id": "T-1", "priority": "low", "status": "open"}
        | body,
    )


@pytest.mark.parametrize(
    ("speed", "compress", "max_wait", "request_seconds", "expected"),
    [
        (2.0, False, 60.0, 0.0, [1.0, 1.5]),
        (1.0, True, 60.0, 0.0, []),
        (1.0, False, 2.5, 0.0, [2.0, 2.5]),
        (2.0, False, 60.0, 0.25, [0.75, 1.25]),  # the time a request took counts
        (2.0, False, 60.0, 5.0, []),  # slower than the recording: no waiting at all
    ],
)
def test_replay_waits_the_planned_gaps_and_no_more(
    speed: float, compress: bool, max_wait: float, request_seconds: float, expected: list[float]
) -> None:
    fixtures = [generic_fixture(0), generic_fixture(2), generic_fixture(5)]
    clock = FakeTime(request_seconds)
    with clock.client() as client:
        results = replay(
            fixtures,
            client=client,
            secrets=SECRETS,
            waits=gaps(
                [f.offset_seconds for f in fixtures],
                speed=speed,
                compress=compress,
                max_wait=max_wait,
            ),
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            now=lambda: NOW,
        )
    assert clock.sleeps == pytest.approx(expected)
    assert [(r.status, r.ok, r.outcome) for r in results] == [(202, True, "accepted ticket=1")] * 3


def test_a_refused_or_unanswered_request_is_reported_not_raised() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/generic"):
            raise httpx.ConnectError("refused")
        return httpx.Response(401, json={"error": "unauthorized"})

    fixtures = [generic_fixture(0), Fixture(Path("0002-zendesk.json"), "zendesk", 0, {}, {})]
    transport = httpx.MockTransport(refuse)
    with httpx.Client(base_url="http://127.0.0.1:9", transport=transport) as client:
        results = replay(fixtures, client=client, secrets=SECRETS, waits=[0, 0])
    assert [(r.status, r.ok, r.outcome) for r in results] == [
        (None, False, "no answer: ConnectError"),
        (401, False, "error: unauthorized"),
    ]


# --- re-signing ------------------------------------------------------------------------------


def test_freshdesk_fixtures_are_sent_with_basic_auth() -> None:
    fixture = Fixture(Path("1-freshdesk.json"), "freshdesk", 0, {}, {"ticket_id": "1"})
    body, headers = signed_request(fixture, SECRETS, NOW)
    check_shared_secret(headers["authorization"], [FD_SECRET.encode()])
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"ticket_id": "1"}


def test_zendesk_fixtures_are_re_signed_with_a_fresh_timestamp() -> None:
    fixture = Fixture(
        Path("2-zendesk.json"),
        "zendesk",
        0,
        {"content-type": "application/json", "x-zendesk-webhook-invocation-id": "835"},
        {"zendesk_webhook": {"ticket_id": "8", "ticket_subject": "Café ☃"}},
    )
    body, headers = signed_request(fixture, SECRETS, NOW)
    assert headers["x-zendesk-webhook-signature-timestamp"] == "2026-11-26T12:00:00Z"
    assert headers["x-zendesk-webhook-invocation-id"] == "835"  # the dedup key is kept
    signatures.verify_zendesk(
        body=body,
        signature=headers["x-zendesk-webhook-signature"],
        timestamp=headers["x-zendesk-webhook-signature-timestamp"],
        secrets=[ZD_SECRET.encode()],
        now=NOW + timedelta(seconds=30),
    )
    assert "Café ☃" in body.decode("utf-8")


@pytest.mark.parametrize("recorded_id", ["msg_2Lq0", None])
def test_generic_fixtures_are_re_signed_keeping_or_deriving_the_webhook_id(
    recorded_id: str | None,
) -> None:
    headers_in = {"webhook-id": recorded_id} if recorded_id else {}
    fixture = Fixture(Path("3-generic.json"), "generic", 0, headers_in, generic_fixture(0).body)
    body, headers = signed_request(fixture, SECRETS, NOW)
    signatures.verify_standard(
        body=body,
        msg_id=headers["webhook-id"],
        timestamp=headers["webhook-timestamp"],
        signature=headers["webhook-signature"],
        keys=[signatures.standard_secret(WH_SECRET)],
        now=NOW,
    )
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    if recorded_id:
        assert headers["webhook-id"] == recorded_id
    else:  # derived from the content: the same fixture twice is a redelivery
        assert headers["webhook-id"] == signed_request(fixture, SECRETS, NOW)[1]["webhook-id"]
    generic.parse_webhook(body, headers["webhook-id"])


def test_a_missing_or_unusable_secret_is_a_fixture_error_that_names_no_secret() -> None:
    fixture = generic_fixture(0)
    with pytest.raises(FixtureError, match="no generic secret"):
        signed_request(fixture, ReplaySecrets(), NOW)
    with pytest.raises(FixtureError, match="whsec_") as caught:
        signed_request(fixture, ReplaySecrets(generic="not base64!"), NOW)
    assert "not base64!" not in str(caught.value)


# --- event times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T09:00:00Z", "2026-11-26T10:00:30Z"),
        ("2026-11-25T09:00:00+01:00", "2026-11-26T10:00:30+01:00"),
        ("2026-11-25T09:00:00", "2026-11-26T10:00:30"),
        ("2026-11-25T09:00:00.250Z", "2026-11-26T10:00:30.250000Z"),
        ("not a time", "not a time"),
    ],
)
def test_event_times_shift_in_their_own_style(text: str, expected: str) -> None:
    assert shift_time_text(text, timedelta(days=1, hours=1, seconds=30)) == expected


def test_only_the_event_time_the_service_reads_is_shifted() -> None:
    delta = timedelta(hours=1)
    inner = freshdesk_inner(ticket_created_at="2026-11-26T11:00:00Z")
    shifted = shift_event_time("freshdesk", {"freshdesk_webhook": inner}, delta)
    assert shifted["freshdesk_webhook"] == inner | {"ticket_updated_at": "2026-11-26T13:00:00Z"}
    assert shift_event_time("zendesk", inner, delta)["ticket_updated_at"] == (
        "2026-11-26T13:00:00Z"
    )
    assert shift_event_time("generic", {"updated_at": "2026-11-26T12:00:00Z"}, delta) == {
        "updated_at": "2026-11-26T13:00:00Z"
    }
    assert shift_event_time("generic", {"ticket_id": "1"}, delta) == {"ticket_id": "1"}


def test_replay_moves_the_timeline_to_now_by_one_amount() -> None:
    """The first fixture's time lands on now; spacing and redeliveries are kept."""
    recorded = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

    def fixture(offset: float, updated: str) -> Fixture:
        return Fixture(
            Path(f"{int(offset)}-freshdesk.json"),
            "freshdesk",
            offset,
            {},
            {"freshdesk_webhook": freshdesk_inner(ticket_updated_at=updated)},
            recorded_at=recorded + timedelta(seconds=offset),
        )

    fixtures = [
        fixture(0, "2026-11-20T07:59:58Z"),
        fixture(600, "2026-11-20T08:10:00Z"),
        fixture(900, "2026-11-20T07:59:58Z"),  # a late redelivery of the first
    ]
    clock = FakeTime()
    with clock.client() as client:
        replay(fixtures, client=client, secrets=SECRETS, waits=[0, 0, 0], now=lambda: NOW)
    sent = [json.loads(r.content)["freshdesk_webhook"]["ticket_updated_at"] for r in clock.sent]
    assert sent == ["2026-11-26T11:59:58Z", "2026-11-26T12:10:00Z", "2026-11-26T11:59:58Z"]
    assert clock.sent[0].content == clock.sent[2].content

    clock = FakeTime()
    with clock.client() as client:
        replay(fixtures[:1], client=client, secrets=SECRETS, waits=[0], shift_times=False)
    assert json.loads(clock.sent[0].content) == fixtures[0].body


def test_placeholders_already_in_a_body_are_kept_and_never_reused() -> None:
    """A replay recorded again keeps its placeholders; new people get new numbers."""
    scrubber = Scrubber()
    body = {
        "requester_name": "name-1",
        "agent_name": "Max Muster",
        "requester_email": "person-1@example.invalid",
        "ticket_agent_email": "max@acme.example",
        "ticket_latest_private_comment": f"{NOTE_MARKER} text-1",
    }
    assert scrubber.body(body) == {
        "requester_name": "name-1",
        "agent_name": "name-2",
        "requester_email": "person-1@example.invalid",
        "ticket_agent_email": "person-2@example.invalid",
        "ticket_latest_private_comment": f"{NOTE_MARKER} text-1",
    }


def test_an_address_field_with_more_than_addresses_is_replaced_whole() -> None:
    scrubbed = Scrubber().body(
        {
            "from_email": "Jane Roe <jane@x.example>",
            "cc_emails": "a@x.example; b@x.example",
            "reply_email": "{{ticket.requester.email}}",
        }
    )
    assert scrubbed == {
        "from_email": "person-1@example.invalid",
        "cc_emails": "person-2@example.invalid; person-3@example.invalid",
        "reply_email": "person-4@example.invalid",
    }
