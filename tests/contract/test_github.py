"""GitHub REST adapter (issues and comments, idempotent by marker) against recorded samples."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.contract.loop import loop_clock_advanced, settle
from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.github.issues import GitHubIssues
from ticketbridge.adapters.outbound.github.markers import MAX_BODY, marker_line
from ticketbridge.adapters.outbound.ports import Sent

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vendors" / "github"
TLS = ssl.create_default_context()  # built once: a client per test would otherwise build its own
TOKEN = "ghs_InstallationTokenDoNotLog0123456789ab"
API_URL = "https://api.github.com"
REPO = f"{API_URL}/repos/acme/incidents"
ISSUES = f"{REPO}/issues"
ISSUE_42 = f"{ISSUES}/42"
COMMENTS_42 = f"{ISSUE_42}/comments"
ISSUE_URL = "https://github.com/acme/incidents/issues/42"
MARKER = "freshdesk/acme/ticket/11/postmortem/1"
COMMENT_MARKER = "freshdesk/acme/ticket/11/resolved/1"
NOW = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
NOW_HTTP = "Thu, 26 Nov 2026 12:30:00 GMT"
REQUEST_ID = "C2A4:1F0B:2E9D1A3:2F8C7B4:6745B9E2"


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def create_payload(**changes: Any) -> dict[str, Any]:
    request = recorded("issue_create_request.json")
    payload = {
        "action": "create_issue",
        "marker": MARKER,
        "title": request["title"],
        "body": request["body"].rsplit("\n\n", 1)[0],  # the recorded body without its marker
        "labels": request["labels"],
        "assignees": request["assignees"],
    }
    payload.update(changes)
    return payload


def comment_payload(**changes: Any) -> dict[str, Any]:
    payload = {
        "action": "comment",
        "marker": COMMENT_MARKER,
        "body": recorded("comment_create_request.json")["body"].rsplit("\n\n", 1)[0],
        "refs": {"issue": {"issue_number": 42, "issue_url": ISSUE_URL}},
        "only_if_open": True,
    }
    payload.update(changes)
    return payload


def issues_without_42() -> list[dict[str, Any]]:
    """The recorded list before issue 42 existed: a PR and an issue that only quote its marker."""
    return [item for item in recorded("issues_list.json") if item["number"] != 42]


def comments_without_ours() -> list[dict[str, Any]]:
    return [c for c in recorded("comments_list.json") if c["user"]["type"] != "Bot"]


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(verify=TLS) as c:
        yield c


def make_github(client: httpx.AsyncClient, **kwargs: Any) -> GitHubIssues:
    return GitHubIssues(
        api_url=kwargs.pop("api_url", API_URL),
        token=TOKEN,
        repository=kwargs.pop("repository", "acme/incidents"),
        client=client,
        **kwargs,
    )


def assert_authenticated(request: httpx.Request) -> None:
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["user-agent"] == "ticketbridge"


def assert_is_search(request: httpx.Request) -> None:
    assert request.method == "GET"
    assert request.content == b""
    assert request.url.copy_with(query=None) == ISSUES
    assert dict(request.url.params) == {
        "state": "all",
        "sort": "created",
        "direction": "desc",
        "per_page": "100",
    }
    assert_authenticated(request)


# --- create_issue: the exact requests -------------------------------------------------------


async def test_create_issue_requests_equal_the_recorded_ones(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        search = mock.get(ISSUES).mock(return_value=httpx.Response(200, json=issues_without_42()))
        create = mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        sent = await make_github(client).send(create_payload(), effect_key="k")
    assert search.call_count == 1
    assert_is_search(search.calls[0].request)
    assert create.call_count == 1
    request = create.calls[0].request
    assert request.method == "POST"
    assert request.url == ISSUES
    assert_authenticated(request)
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body == recorded("issue_create_request.json")
    assert body["body"].endswith(f"\n\n<!-- ticketbridge:{MARKER} -->")
    assert sent == Sent(201, {"issue_number": 42, "issue_url": ISSUE_URL})


async def test_search_happens_before_the_create(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        await make_github(client).send(create_payload(), effect_key="k")
        assert [c.request.method for c in mock.calls] == ["GET", "POST"]


@pytest.mark.parametrize("assignees", [None, []], ids=["absent", "empty"])
async def test_assignees_are_optional(client: httpx.AsyncClient, assignees: Any) -> None:
    payload = create_payload()
    if assignees is None:
        del payload["assignees"]
    else:
        payload["assignees"] = assignees
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        create = mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        await make_github(client).send(payload, effect_key="k")
    expected = recorded("issue_create_request.json")
    del expected["assignees"]
    assert json.loads(create.calls[0].request.content) == expected


async def test_existing_issue_is_returned_without_a_post(client: httpx.AsyncClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=recorded("issues_list.json")))
        create = mock.post(ISSUES).mock(return_value=httpx.Response(201))
        sent = await make_github(client).send(create_payload(), effect_key="k")
    assert create.call_count == 0
    assert sent == Sent(200, {"issue_number": 42, "issue_url": ISSUE_URL, "existing": True})


async def test_pull_request_and_quoted_markers_are_not_matches(client: httpx.AsyncClient) -> None:
    listed = issues_without_42()
    # The list holds PR #45, whose body ends with the marker, and issue #43, which quotes it.
    assert any(
        "pull_request" in item and item["body"].endswith(marker_line(MARKER)) for item in listed
    )
    assert any(
        marker_line(MARKER) in (item["body"] or "") for item in listed if item["number"] == 43
    )
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=listed))
        create = mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        sent = await make_github(client).send(create_payload(), effect_key="k")
    assert create.call_count == 1
    assert sent.code == 201


async def test_another_markers_issue_is_found_by_its_last_line(client: httpx.AsyncClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=recorded("issues_list.json")))
        create = mock.post(ISSUES).mock(return_value=httpx.Response(201))
        sent = await make_github(client).send(
            create_payload(marker="freshdesk/acme/ticket/12/postmortem/1"), effect_key="k"
        )
    assert create.call_count == 0
    assert sent.info["issue_number"] == 43


@pytest.mark.parametrize(
    "marker",
    ["freshdesk/acme/ticket/11/postmortem", "freshdesk/acme/ticket/11/postmortem/10", "FRESHDESK"],
)
async def test_a_marker_prefix_or_variant_is_not_a_match(
    client: httpx.AsyncClient, marker: str
) -> None:
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=recorded("issues_list.json")))
        create = mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        await make_github(client).send(create_payload(marker=marker), effect_key="k")
    assert create.call_count == 1


async def test_marker_survives_crlf_and_trailing_whitespace(client: httpx.AsyncClient) -> None:
    item = recorded("issue_created.json")
    item["body"] = item["body"].replace("\n", "\r\n") + "\r\n  \r\n"
    with respx.mock(assert_all_called=False) as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[item]))
        create = mock.post(ISSUES).mock(return_value=httpx.Response(201))
        sent = await make_github(client).send(create_payload(), effect_key="k")
    assert create.call_count == 0
    assert sent.info["existing"] is True


# --- the marker cannot break out of its HTML comment ---------------------------------------


class CommentsAndText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.comments: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data)

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)


INJECTIONS = [
    "x --> <img src=x onerror=alert(1)>",
    "a--b",
    "--><script>alert(1)</script><!--",
    "trailing-",
    "x--!>y",
    "a---b",
    "tab\tand\nnewline",
    "ünïcode/票",
    "%2D%2D",
]


@pytest.mark.parametrize("marker", INJECTIONS)
async def test_marker_injection_stays_inside_one_comment(
    client: httpx.AsyncClient, marker: str
) -> None:
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        create = mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        await make_github(client).send(create_payload(marker=marker, body=""), effect_key="k")
    sent_body = json.loads(create.calls[0].request.content)["body"]
    line = sent_body.strip()
    assert "\n" not in line
    assert line == marker_line(marker)
    inner = line.removeprefix("<!-- ").removesuffix(" -->")
    assert "--" not in inner
    assert ">" not in inner
    assert "<" not in inner
    parser = CommentsAndText()
    parser.feed(sent_body)
    parser.close()
    assert parser.comments == [f" {inner} "]
    assert (parser.text, parser.tags) == ([], [])


def test_marker_encoding_is_one_to_one() -> None:
    markers = [*INJECTIONS, MARKER, COMMENT_MARKER, "a-b", "a%2Db", "a b", "a%20b", "a+b"]
    lines = [marker_line(m) for m in markers]
    assert len(set(lines)) == len(markers)
    assert marker_line(MARKER) == f"<!-- ticketbridge:{MARKER} -->"


async def test_a_body_quoting_our_marker_line_cannot_fake_another_effect(
    client: httpx.AsyncClient,
) -> None:
    # Customer text copied into the body ends with another effect's marker line: we still
    # append our own, and only the last line counts.
    other = marker_line("freshdesk/acme/ticket/99/postmortem/1")
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        create = mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        await make_github(client).send(create_payload(body=f"quoted:\n{other}"), effect_key="k")
    sent_body = json.loads(create.calls[0].request.content)["body"]
    assert sent_body.rsplit("\n", 1)[-1] == marker_line(MARKER)


async def test_an_over_long_body_is_cut_and_keeps_its_marker(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        create = mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        await make_github(client).send(create_payload(body="x" * 70_000), effect_key="k")
    sent_body = json.loads(create.calls[0].request.content)["body"]
    assert len(sent_body) == MAX_BODY
    assert sent_body.endswith(f"(truncated by ticketbridge)\n\n{marker_line(MARKER)}")


# --- the ambiguous timeout: exactly one issue ----------------------------------------------


async def test_timeout_on_create_then_retry_finds_the_first_issue(
    client: httpx.AsyncClient,
) -> None:
    github = make_github(client)
    with respx.mock() as mock:
        # GitHub committed the issue, but its answer never arrived.
        search = mock.get(ISSUES).mock(
            side_effect=[
                httpx.Response(200, json=issues_without_42()),
                httpx.Response(200, json=recorded("issues_list.json")),
            ]
        )
        create = mock.post(ISSUES).mock(side_effect=httpx.ReadTimeout("read timed out"))
        with pytest.raises(AdapterError) as info:
            await github.send(create_payload(), effect_key="k")
        assert info.value.retryable
        assert info.value.status_code is None
        sent = await github.send(create_payload(), effect_key="k")
    assert create.call_count == 1
    assert search.call_count == 2
    assert sent == Sent(200, {"issue_number": 42, "issue_url": ISSUE_URL, "existing": True})


async def test_concurrent_sends_of_one_marker_create_one_issue(client: httpx.AsyncClient) -> None:
    github = make_github(client)
    created: list[dict[str, Any]] = []

    async def listing(request: httpx.Request) -> httpx.Response:
        snapshot = issues_without_42() + created
        await settle()  # every other send runs meanwhile: without the lock, all would create
        return httpx.Response(200, json=snapshot)

    def create(request: httpx.Request) -> httpx.Response:
        issue = recorded("issue_created.json")
        created.append(issue)
        return httpx.Response(201, json=issue)

    with respx.mock() as mock:
        mock.get(ISSUES).mock(side_effect=listing)
        post = mock.post(ISSUES).mock(side_effect=create)
        results = await asyncio.gather(
            *(github.send(create_payload(), effect_key="k") for _ in range(3))
        )
    assert post.call_count == 1
    assert sorted(r.code for r in results) == [200, 200, 201]
    assert {r.info["issue_number"] for r in results} == {42}


# --- comment --------------------------------------------------------------------------------


async def test_comment_requests_equal_the_recorded_ones(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        issue = mock.get(ISSUE_42).mock(
            return_value=httpx.Response(200, json=recorded("issue_created.json"))
        )
        listing = mock.get(COMMENTS_42).mock(
            return_value=httpx.Response(200, json=comments_without_ours())
        )
        post = mock.post(COMMENTS_42).mock(
            return_value=httpx.Response(201, json=recorded("comment_created.json"))
        )
        sent = await make_github(client).send(comment_payload(), effect_key="k")
        assert [c.request.method for c in mock.calls] == ["GET", "GET", "POST"]
        for call in mock.calls:
            assert_authenticated(call.request)
    assert issue.calls[0].request.url == ISSUE_42
    assert listing.calls[0].request.url == f"{COMMENTS_42}?per_page=100"
    request = post.calls[0].request
    assert request.url == COMMENTS_42
    assert json.loads(request.content) == recorded("comment_create_request.json")
    assert sent == Sent(
        201,
        {
            "comment_id": 2501234567,
            "comment_url": f"{ISSUE_URL}#issuecomment-2501234567",
        },
    )


async def test_existing_comment_is_returned_without_a_post(client: httpx.AsyncClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(ISSUE_42).mock(
            return_value=httpx.Response(200, json=recorded("issue_created.json"))
        )
        mock.get(COMMENTS_42).mock(
            return_value=httpx.Response(200, json=recorded("comments_list.json"))
        )
        post = mock.post(COMMENTS_42).mock(return_value=httpx.Response(201))
        sent = await make_github(client).send(comment_payload(), effect_key="k")
    assert post.call_count == 0
    assert sent == Sent(200, {"comment_id": 2501234500, "existing": True})


async def test_comment_on_a_closed_issue_is_skipped(client: httpx.AsyncClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(ISSUE_42).mock(
            return_value=httpx.Response(200, json=recorded("issue_closed.json"))
        )
        listing = mock.get(COMMENTS_42).mock(return_value=httpx.Response(200, json=[]))
        post = mock.post(COMMENTS_42).mock(return_value=httpx.Response(201))
        sent = await make_github(client).send(comment_payload(), effect_key="k")
    assert (listing.call_count, post.call_count) == (0, 0)
    assert sent == Sent(200, {"skipped": "issue closed"})


@pytest.mark.parametrize("only_if_open", [False, None], ids=["false", "absent"])
async def test_comment_without_only_if_open_does_not_read_the_issue(
    client: httpx.AsyncClient, only_if_open: bool | None
) -> None:
    payload = comment_payload(only_if_open=only_if_open)
    if only_if_open is None:
        del payload["only_if_open"]
    with respx.mock() as mock:
        mock.get(COMMENTS_42).mock(return_value=httpx.Response(200, json=[]))
        mock.post(COMMENTS_42).mock(
            return_value=httpx.Response(201, json=recorded("comment_created.json"))
        )
        sent = await make_github(client).send(payload, effect_key="k")
        # Nothing else is routed: a GET of the issue itself would fail the send.
        assert [c.request.method for c in mock.calls] == ["GET", "POST"]
    assert sent.code == 201


async def test_comments_search_also_reads_the_last_page(client: httpx.AsyncClient) -> None:
    first = [{**comments_without_ours()[0], "id": 2500000000 + i} for i in range(100)]
    last_link = (
        f'<{COMMENTS_42}?per_page=100&page=2>; rel="next", '
        f'<https://evil.example.com/steal?per_page=100&page=3>; rel="last"'
    )

    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "3":
            return httpx.Response(200, json=recorded("comments_list.json"))
        return httpx.Response(200, json=first, headers={"Link": last_link})

    with respx.mock(assert_all_called=False) as mock:
        listing = mock.get(COMMENTS_42).mock(side_effect=reply)
        post = mock.post(COMMENTS_42).mock(return_value=httpx.Response(201))
        sent = await make_github(client).send(comment_payload(only_if_open=False), effect_key="k")
    assert post.call_count == 0
    assert sent == Sent(200, {"comment_id": 2501234500, "existing": True})
    # The page number is taken from the Link header, never its host: we build our own URL.
    assert [str(c.request.url) for c in listing.calls] == [
        f"{COMMENTS_42}?per_page=100",
        f"{COMMENTS_42}?per_page=100&page=3",
    ]


@pytest.mark.parametrize(
    "link",
    [
        f'<{COMMENTS_42}?page=1>; rel="last"',
        f'<{COMMENTS_42}?page=abc>; rel="last"',
        f'<{COMMENTS_42}?page=99999999>; rel="last"',
        f'<{COMMENTS_42}?page=2>; rel="next"',
    ],
    ids=["one", "not-a-number", "absurd", "no-last"],
)
async def test_odd_link_headers_read_one_page(client: httpx.AsyncClient, link: str) -> None:
    with respx.mock() as mock:
        listing = mock.get(COMMENTS_42).mock(
            return_value=httpx.Response(200, json=[], headers={"Link": link})
        )
        mock.post(COMMENTS_42).mock(
            return_value=httpx.Response(201, json=recorded("comment_created.json"))
        )
        await make_github(client).send(comment_payload(only_if_open=False), effect_key="k")
    assert listing.call_count == 1


@pytest.mark.parametrize(
    "refs",
    [
        None,
        {},
        {"issue": None},
        {"issue": {}},
        {"issue": {"issue_number": None}},
        {"issue": {"issue_number": 0}},
        {"issue": {"issue_number": -4}},
        {"issue": {"issue_number": "42"}},
        {"issue": {"issue_number": True}},
        {"issue": {"issue_number": 4.2}},
    ],
    ids=str,
)
async def test_comment_on_an_issue_never_created_is_final(
    client: httpx.AsyncClient, refs: Any
) -> None:
    with respx.mock() as mock:
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(comment_payload(refs=refs), effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable
    assert "never created" in str(info.value)


# --- refused before sending ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "close_issue", "marker": MARKER},
        {"marker": MARKER},
        create_payload(marker=""),
        create_payload(marker="   "),
        create_payload(marker=None),
        create_payload(marker=7),
        create_payload(marker="m" * 201),
        create_payload(title=""),
        create_payload(title=None),
        create_payload(body=None),
        create_payload(body=["x"]),
        create_payload(labels=None),
        create_payload(labels="post-incident"),
        create_payload(labels=["ok", 3]),
        create_payload(labels=[""]),
        create_payload(assignees="alice-sre"),
        create_payload(assignees=[None]),
        comment_payload(body=""),
        comment_payload(body=None),
        comment_payload(marker=""),
        comment_payload(only_if_open="yes"),
    ],
    ids=lambda p: str(p)[:60],
)
async def test_bad_payloads_are_refused_before_any_call(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    with respx.mock() as mock:  # any request at all would fail: nothing is routed
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(payload, effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable


async def test_a_non_object_payload_is_refused(client: httpx.AsyncClient) -> None:
    with pytest.raises(AdapterError) as info:
        await make_github(client).send(["create_issue"], effect_key="k")  # type: ignore[arg-type]
    assert not info.value.retryable


# --- malformed replies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(201, text="<html>ok</html>"),
        httpx.Response(201, json={}),
        httpx.Response(201, json={"number": "42", "html_url": ISSUE_URL}),
        httpx.Response(201, json={"number": 42}),
        httpx.Response(201, json=[recorded("issue_created.json")]),
    ],
    ids=["html", "empty", "string-number", "no-url", "list"],
)
async def test_malformed_created_issue_is_final_and_says_it_may_exist(
    client: httpx.AsyncClient, reply: httpx.Response
) -> None:
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        mock.post(ISSUES).mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(create_payload(), effect_key="k")
    assert not info.value.retryable
    assert info.value.status_code == 201
    assert "may exist" in str(info.value)


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(201, text=""),
        httpx.Response(201, json={"id": "2501234567"}),
        httpx.Response(201, json={"id": 2501234567}),
    ],
    ids=["empty", "string-id", "no-url"],
)
async def test_malformed_created_comment_is_final_and_says_it_may_exist(
    client: httpx.AsyncClient, reply: httpx.Response
) -> None:
    with respx.mock() as mock:
        mock.get(COMMENTS_42).mock(return_value=httpx.Response(200, json=[]))
        mock.post(COMMENTS_42).mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(comment_payload(only_if_open=False), effect_key="k")
    assert not info.value.retryable
    assert "may exist" in str(info.value)


@pytest.mark.parametrize(
    ("route", "reply"),
    [
        (ISSUES, {"items": []}),
        (ISSUES, ["x"]),
        (ISSUES, [{**recorded("issue_created.json"), "number": "42"}]),
        (ISSUES, "<html>"),
        (ISSUE_42, {"state": "merged"}),
        (ISSUE_42, []),
        (COMMENTS_42, {"comments": []}),
        (COMMENTS_42, [None]),
        (COMMENTS_42, [{**recorded("comment_created.json"), "id": None}]),
    ],
    ids=str,
)
async def test_malformed_reads_are_final_and_create_nothing(
    client: httpx.AsyncClient, route: str, reply: Any
) -> None:
    payload = create_payload() if route == ISSUES else comment_payload()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(ISSUE_42).mock(
            return_value=httpx.Response(200, json=recorded("issue_created.json"))
        )
        mock.get(route).mock(return_value=httpx.Response(200, json=reply))
        post = mock.post(url__regex=rf"{REPO}/.*").mock(return_value=httpx.Response(201))
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(payload, effect_key="k")
    assert not info.value.retryable
    assert "malformed" in str(info.value)
    assert post.call_count == 0


# --- classification -----------------------------------------------------------------------

RETRY_TABLE = [
    (500, True),
    (502, True),
    (503, True),
    (504, True),
    (408, True),
    (400, False),
    (401, False),
    (403, False),
    (404, False),
    (410, False),
    (422, False),
]


@pytest.mark.parametrize(("status", "retryable"), RETRY_TABLE)
@pytest.mark.parametrize("call", ["search", "create", "issue", "comments", "comment"])
async def test_status_classification(
    client: httpx.AsyncClient, status: int, retryable: bool, call: str
) -> None:
    body = recorded("forbidden.json") if status == 403 else {"message": "no"}
    failing = httpx.Response(status, json=body)
    routes = {
        "search": ("GET", ISSUES),
        "create": ("POST", ISSUES),
        "issue": ("GET", ISSUE_42),
        "comments": ("GET", COMMENTS_42),
        "comment": ("POST", COMMENTS_42),
    }
    with respx.mock(assert_all_called=False) as mock:
        for name, (method, url) in routes.items():
            ok = httpx.Response(200, json=[] if name in ("search", "comments") else {})
            if name == "issue":
                ok = httpx.Response(200, json=recorded("issue_created.json"))
            mock.route(method=method, url=url).mock(return_value=failing if name == call else ok)
        payload = create_payload() if call in ("search", "create") else comment_payload()
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(payload, effect_key="k")
    assert (info.value.retryable, info.value.status_code) == (retryable, status)
    if not retryable:
        assert info.value.retry_after is None


def rate_limited(status: int, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


SECONDARY = recorded("rate_limited_secondary.json")
PRIMARY = recorded("rate_limited_primary.json")
RESET_IN_120 = str(int(NOW.timestamp()) + 120)


@pytest.mark.parametrize(
    ("reply", "wait"),
    [
        (rate_limited(429, SECONDARY, {"Retry-After": "37"}), 37.0),
        (rate_limited(429, None, {}), 60.0),
        (rate_limited(403, SECONDARY, {"Retry-After": "90"}), 90.0),
        (
            rate_limited(
                403,
                PRIMARY,
                {
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-used": "5000",
                    "x-ratelimit-reset": RESET_IN_120,
                    "x-ratelimit-resource": "core",
                    "Date": NOW_HTTP,
                },
            ),
            120.0,
        ),
        (
            rate_limited(
                429,
                PRIMARY,
                {"x-ratelimit-remaining": "0", "x-ratelimit-reset": RESET_IN_120, "Date": NOW_HTTP},
            ),
            120.0,
        ),
        (
            rate_limited(
                403,
                PRIMARY,
                {
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(int(NOW.timestamp()) - 5),
                    "Date": NOW_HTTP,
                },
            ),
            0.0,
        ),
        (rate_limited(403, PRIMARY, {"x-ratelimit-remaining": "0"}), 60.0),
        (
            rate_limited(403, PRIMARY, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "x"}),
            60.0,
        ),
        (
            rate_limited(
                403, PRIMARY, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": b"\xb2"}
            ),
            60.0,
        ),
        (
            rate_limited(
                403, PRIMARY, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9" * 400}
            ),
            60.0,
        ),
        (rate_limited(403, SECONDARY, {}), 60.0),
        (rate_limited(403, SECONDARY, {"x-ratelimit-remaining": "4987"}), 60.0),
        (rate_limited(403, {"message": "Rate Limit hit"}, {}), 60.0),
        (rate_limited(403, recorded("forbidden.json"), {"Retry-After": "15"}), 15.0),
    ],
    ids=[
        "429-retry-after",
        "429-bare",
        "403-secondary-retry-after",
        "403-primary-reset",
        "429-primary-reset",
        "403-reset-passed",
        "403-remaining-0-no-reset",
        "403-remaining-0-bad-reset",
        "403-remaining-0-non-ascii-reset",
        "403-remaining-0-400-digit-reset",
        "403-secondary-message-only",
        "403-secondary-remaining-left",
        "403-message-any-case",
        "403-retry-after-only",
    ],
)
@pytest.mark.parametrize("action", ["create", "comment"])
async def test_rate_limit_classification(
    client: httpx.AsyncClient, reply: httpx.Response, wait: float, action: str
) -> None:
    url, payload = (
        (ISSUES, create_payload()) if action == "create" else (COMMENTS_42, comment_payload())
    )
    with respx.mock(assert_all_called=False) as mock:
        mock.get(ISSUE_42).mock(
            return_value=httpx.Response(200, json=recorded("issue_created.json"))
        )
        mock.get(url).mock(return_value=httpx.Response(200, json=[]))
        mock.post(url).mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(payload, effect_key="k")
    assert info.value.retryable
    assert info.value.retry_after == wait
    assert info.value.status_code == reply.status_code
    assert "rate limit" in str(info.value)


async def test_reset_without_a_date_header_is_measured_from_now(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: NOW.timestamp())
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW.timestamp()) + 75)}
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(403, json=PRIMARY, headers=headers))
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(create_payload(), effect_key="k")
    assert (info.value.retryable, info.value.retry_after) == (True, 75.0)


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (403, recorded("forbidden.json"), "Resource not accessible by integration"),
        (422, recorded("validation_failed.json"), "Validation Failed [assignees invalid]"),
        (401, {"message": "Bad credentials"}, "Bad credentials"),
        (404, {"message": "Not Found"}, "Not Found"),
    ],
)
async def test_final_answers_are_explained(
    client: httpx.AsyncClient, status: int, body: Any, words: str
) -> None:
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        mock.post(ISSUES).mock(return_value=httpx.Response(status, json=body))
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(create_payload(), effect_key="k")
    assert not info.value.retryable
    assert info.value.retry_after is None
    assert info.value.status_code == status
    assert f"HTTP {status}" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("request_id", "kept"),
    [(REQUEST_ID, True), ("x" * 65, False), ("id with spaces", False), ("<b>", False)],
)
async def test_request_id_of_a_failure_is_kept_when_safe(
    client: httpx.AsyncClient, request_id: str, kept: bool
) -> None:
    with respx.mock() as mock:
        mock.get(ISSUES).mock(
            return_value=httpx.Response(502, headers={"x-github-request-id": request_id})
        )
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(create_payload(), effect_key="k")
    assert (request_id in str(info.value)) is kept
    assert info.value.retryable


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("x"), httpx.ReadTimeout("x"), httpx.RemoteProtocolError("x")],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_transport_failures_are_retryable(
    client: httpx.AsyncClient, exc: Exception, method: str
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(ISSUES).mock(
            side_effect=exc if method == "GET" else None,
            return_value=httpx.Response(200, json=[]),
        )
        mock.post(ISSUES).mock(side_effect=exc)
        with pytest.raises(AdapterError) as info:
            await make_github(client).send(create_payload(), effect_key="k")
    assert info.value.retryable
    assert info.value.status_code is None


# --- the content-creation budget -------------------------------------------------------------


async def test_default_budget_is_75_creations_a_minute(client: httpx.AsyncClient) -> None:
    limiter = make_github(client).limiter
    assert (limiter.max_rate, limiter.time_period) == (75, 60)


async def test_third_create_waits_for_the_budget_but_its_search_does_not(
    client: httpx.AsyncClient,
) -> None:
    github = make_github(client, creations_per_minute=2)
    with respx.mock() as mock:
        search = mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        create = mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        await github.send(create_payload(marker="a"), effect_key="a")
        await github.send(create_payload(marker="b"), effect_key="b")
        assert not github.limiter.has_capacity()
        third = asyncio.create_task(github.send(create_payload(marker="c"), effect_key="c"))
        await settle()
        assert search.call_count == 3  # reads are not content: they never wait
        assert create.call_count == 2
        assert not third.done()
        # A rolling window: the third goes once the first call is a whole minute old.
        with loop_clock_advanced(59.5):
            await settle()
            assert not third.done()
        with loop_clock_advanced(61.5):
            sent = await asyncio.wait_for(third, timeout=5)
    assert sent.code == 201
    assert create.call_count == 3


async def test_comments_spend_the_same_budget(client: httpx.AsyncClient) -> None:
    github = make_github(client, creations_per_minute=2)
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        mock.post(ISSUES).mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        mock.get(COMMENTS_42).mock(return_value=httpx.Response(200, json=[]))
        mock.post(COMMENTS_42).mock(
            return_value=httpx.Response(201, json=recorded("comment_created.json"))
        )
        await github.send(create_payload(), effect_key="a")
        await github.send(comment_payload(only_if_open=False), effect_key="b")
    assert not github.limiter.has_capacity()


async def test_reads_and_found_markers_spend_no_budget(client: httpx.AsyncClient) -> None:
    github = make_github(client, creations_per_minute=1)
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=recorded("issues_list.json")))
        mock.get(ISSUE_42).mock(
            return_value=httpx.Response(200, json=recorded("issue_created.json"))
        )
        mock.get(COMMENTS_42).mock(
            return_value=httpx.Response(200, json=recorded("comments_list.json"))
        )
        for i in range(5):
            assert (await github.send(create_payload(), effect_key=f"i{i}")).code == 200
            assert (await github.send(comment_payload(), effect_key=f"c{i}")).code == 200
    assert github.limiter.has_capacity()


async def test_failed_creations_spend_the_budget_too(client: httpx.AsyncClient) -> None:
    github = make_github(client, creations_per_minute=2)
    with respx.mock() as mock:
        mock.get(ISSUES).mock(return_value=httpx.Response(200, json=[]))
        mock.post(ISSUES).mock(return_value=httpx.Response(403, json=SECONDARY))
        for _ in range(2):
            with pytest.raises(AdapterError):
                await github.send(create_payload(), effect_key="k")
    assert not github.limiter.has_capacity()


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_url", "prefix"),
    [
        ("https://ghe.example.com/api/v3", "https://ghe.example.com/api/v3"),
        ("https://ghe.example.com/api/v3/", "https://ghe.example.com/api/v3"),
        ("http://127.0.0.1:9300/gh", "http://127.0.0.1:9300/gh"),
    ],
)
async def test_any_base_url_with_a_path_prefix(
    client: httpx.AsyncClient, api_url: str, prefix: str
) -> None:
    with respx.mock() as mock:
        search = mock.get(f"{prefix}/repos/acme/incidents/issues").mock(
            return_value=httpx.Response(200, json=[])
        )
        create = mock.post(f"{prefix}/repos/acme/incidents/issues").mock(
            return_value=httpx.Response(201, json=recorded("issue_created.json"))
        )
        comments = mock.get(f"{prefix}/repos/acme/incidents/issues/42/comments").mock(
            return_value=httpx.Response(200, json=recorded("comments_list.json"))
        )
        github = make_github(client, api_url=api_url)
        await github.send(create_payload(), effect_key="k")
        await github.send(comment_payload(only_if_open=False), effect_key="k")
    assert (search.call_count, create.call_count, comments.call_count) == (1, 1, 1)
    assert_authenticated(create.calls[0].request)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_url": "ftp://api.github.com"},
        {"api_url": "api.github.com"},
        {"api_url": "https://"},
        {"api_url": f"https://x-access-token:{TOKEN}@api.github.com"},
        {"api_url": f"https://api.github.com?token={TOKEN}"},
        {"repository": "acme"},
        {"repository": "acme/"},
        {"repository": "/incidents"},
        {"repository": "acme/incidents/issues"},
        {"repository": "acme/.."},
        {"repository": "../incidents"},
        {"repository": "acme/inci dents"},
        {"repository": "acme/incidents?x=1"},
        {"repository": "acme/%2e%2e"},
        {"token": ""},
        {"token": "   "},
        {"token": TOKEN + "\r\nX-Injected: 1"},
        {"api_url": "http://[::1"},
        {"creations_per_minute": 0},
    ],
    ids=str,
)
async def test_unusable_configuration_is_refused_without_echo(
    client: httpx.AsyncClient, kwargs: dict[str, Any]
) -> None:
    values: dict[str, Any] = {
        "api_url": API_URL,
        "token": TOKEN,
        "repository": "acme/incidents",
        "client": client,
    }
    values.update(kwargs)
    with pytest.raises(ValueError, match="GitHub") as info:
        GitHubIssues(**values)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("repository", ["acme/incidents", "Acme-Corp/status.page", "a_b/c-d_e.f"])
async def test_valid_repositories_are_accepted(client: httpx.AsyncClient, repository: str) -> None:
    assert repository in repr(make_github(client, repository=repository))


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "reply"),
    [
        ("POST", httpx.Response(401, text=f"bad credentials Bearer {TOKEN}")),
        ("POST", httpx.Response(401, json={"message": f"Bad credentials {TOKEN}"})),
        ("POST", httpx.Response(403, json={"message": f"rate limit for {TOKEN}"})),
        (
            "POST",
            httpx.Response(
                422,
                json={"message": TOKEN, "errors": [{"field": TOKEN, "code": "invalid"}]},
            ),
        ),
        ("POST", httpx.Response(404, headers={"x-github-request-id": TOKEN})),
        ("POST", httpx.Response(201, json={"message": TOKEN, "number": TOKEN})),
        ("POST", httpx.Response(201, json=recorded("issue_created.json"))),
        ("GET", httpx.Response(500, text=f"Authorization: Bearer {TOKEN}")),
        ("GET", httpx.ConnectError(f"connect to {ISSUES} with Bearer {TOKEN} failed")),
        ("POST", httpx.ReadTimeout(f"timeout on {ISSUES} ({TOKEN})")),
    ],
    ids=[
        "401-text",
        "401-json",
        "403-rate",
        "422",
        "request-id",
        "201-malformed",
        "201-ok",
        "500",
        "connect-error",
        "read-timeout",
    ],
)
async def test_no_token_in_errors_repr_or_logs(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    reply: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):  # the app's logging setup quiets them to WARNING
        caplog.set_level(logging.DEBUG, logger=name)
    github = make_github(client)
    with respx.mock(assert_all_called=False) as mock:
        search = mock.get(ISSUES)
        create = mock.post(ISSUES)
        failing, working = (search, create) if method == "GET" else (create, search)
        working.mock(return_value=httpx.Response(200, json=[]))
        if isinstance(reply, Exception):
            failing.mock(side_effect=reply)
        else:
            failing.mock(return_value=reply)
        failure: AdapterError | None = None
        try:
            text = repr(await github.send(create_payload(), effect_key="k"))
        except AdapterError as error:
            failure = error
    if failure is not None:
        assert failure.__cause__ is None
        assert failure.__context__ is None or failure.__suppress_context__
        text = f"{failure} {failure!r}"
    if not (method == "GET" and isinstance(reply, Exception)):  # a response was logged
        assert any(r.name == "httpx" for r in caplog.records)  # httpx's own logging ran
    logged = " ".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.__dict__}" for r in caplog.records
    )
    for secret in (TOKEN, f"Bearer {TOKEN}"):
        assert secret not in f"{text} {github!r} {github}"
        assert secret not in logged
