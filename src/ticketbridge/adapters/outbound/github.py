"""GitHub REST adapter: follow-up issues and comments, each created at most once.

GitHub's issues API takes no idempotency key, so every created body ends with a hidden marker
line, ``<!-- ticketbridge:{marker} -->``, and every create looks for it first:

- ``create_issue`` lists the repository's newest 100 issues (``state=all``, pull requests
  skipped) and returns the one whose body ends with the marker line; only when none does is the
  issue POSTed. An ambiguous failure (a timeout after GitHub committed the issue) therefore
  yields exactly one issue: the retry finds the first.
- ``comment`` does the same with the issue's comments (the first page of 100 and, when there
  are more, the last page, where a recent attempt would be), after an optional check that the
  issue is still open.

Only the last non-blank line of a body counts as its marker, so a marker quoted from customer
text inside a body cannot make another effect look done. A marker is percent-encoded into a safe
alphabet (``>`` and every second ``-`` of a run included), so it can never close the comment.

Limits: the search sees only the newest 100 issues (or the first and last 100 comments), and
the per-marker lock guards one process only; the effect store's own ticket→issue map remains
the primary record. Content-creating POSTs pass through a local budget (75 a minute by default,
under GitHub's documented 80 a minute; the 500 an hour is left to GitHub's own answers); GETs do
not. Rate-limit answers (429, or a 403 that says so) are retryable after ``retry-after``, else
``x-ratelimit-reset``, else 60 s. The token never appears in errors or ``repr``.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx

from ticketbridge.adapters.outbound.errors import (
    AdapterError,
    classify_response,
    retry_after_of,
    send_request,
)
from ticketbridge.adapters.outbound.http import is_int, json_of, malformed
from ticketbridge.adapters.outbound.ports import Sent
from ticketbridge.adapters.outbound.ratelimit import RollingWindowLimiter

VENDOR = "github"
NAME = "GitHub"  # as messages show it
API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"
USER_AGENT = "ticketbridge"
PER_PAGE = 100
MAX_LAST_PAGE = 10_000  # a bound on the page number a server's Link header may send us to
# GitHub refuses longer issue and comment bodies with 422 "body is too long (maximum is 65536
# characters)"; a long body is cut so the marker (and the issue) survive.
MAX_BODY = 65_536
TRUNCATED = "\n\n...(truncated by ticketbridge)"
# GitHub: "Otherwise, wait for at least one minute before retrying."
RATE_LIMIT_MIN_WAIT = 60.0
MARKER_PREFIX = "ticketbridge:"
MAX_MARKER = 200
_MAX_ECHO = 200
_MARKER_SAFE = "/:@+=,"  # besides letters, digits and "_.-~", which quote() never escapes
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_TOKEN = re.compile(r"[\x21-\x7e]+")
_REQUEST_ID = re.compile(r"[A-Za-z0-9:._-]{1,64}")
_DASH_RUN = re.compile(r"-(?=-)")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


def marker_line(marker: object) -> str:
    """The hidden HTML comment that identifies one effect's issue or comment.

    The marker is percent-encoded outside a safe alphabet and no two dashes stay adjacent, so
    neither ``-->`` nor ``--`` can appear inside the comment; the encoding is one-to-one.
    """
    if not isinstance(marker, str) or not marker.strip() or len(marker) > MAX_MARKER:
        raise AdapterError(
            f"GitHub marker must be a non-empty string of at most {MAX_MARKER} characters",
            retryable=False,
        )
    encoded = _DASH_RUN.sub("%2D", quote(marker, safe=_MARKER_SAFE))
    return f"<!-- {MARKER_PREFIX}{encoded} -->"


def with_marker(body: str, line: str) -> str:
    """``body`` followed by a blank line and the marker line, cut to GitHub's body limit."""
    suffix = f"\n\n{line}"
    if len(body) + len(suffix) > MAX_BODY:
        body = body[: MAX_BODY - len(suffix) - len(TRUNCATED)] + TRUNCATED
    return body + suffix


class GitHubIssues:
    """Creates issues and comments in one repository, idempotently, through the REST API."""

    def __init__(
        self,
        *,
        api_url: str = "https://api.github.com",
        token: str,
        repository: str,
        client: httpx.AsyncClient,
        creations_per_minute: int = 75,
    ) -> None:
        try:
            url = httpx.URL(api_url)
        except httpx.InvalidURL:
            raise ValueError("GitHub api_url is not a URL") from None
        if (
            url.scheme not in ("http", "https")
            or not url.host
            or url.userinfo
            or url.query
            or url.fragment
        ):
            raise ValueError("GitHub api_url must be an http(s) URL without credentials or query")
        if not _TOKEN.fullmatch(token):
            raise ValueError("GitHub token is empty or holds whitespace or control characters")
        owner, sep, name = repository.partition("/")
        if (
            not sep
            or not _OWNER.fullmatch(owner)
            or not _NAME.fullmatch(name)
            or name in (".", "..")
        ):
            raise ValueError("GitHub repository must be 'owner/name' in letters, digits, '._-'")
        if creations_per_minute < 1:
            raise ValueError("GitHub creations_per_minute must be at least 1")
        self._api_url = api_url.rstrip("/")
        self._repository = repository
        self._repo = f"{self._api_url}/repos/{owner}/{name}"
        self._token = token
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": ACCEPT,
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        self._client = client
        self._limiter = RollingWindowLimiter(creations_per_minute, 60)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __repr__(self) -> str:
        return (
            f"GitHubIssues(api_url={self._api_url!r}, repository={self._repository!r}, token=***)"
        )

    @property
    def limiter(self) -> RollingWindowLimiter:
        """The budget every content-creating call (issue or comment POST) passes through."""
        return self._limiter

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        """Carry out one GitHub effect (``create_issue`` or ``comment``) or raise AdapterError."""
        if not isinstance(payload, dict):
            raise AdapterError("GitHub payload is not a JSON object", retryable=False)
        action = payload.get("action")
        if action == "create_issue":
            return await self._create_issue(payload)
        if action == "comment":
            return await self._comment(payload)
        raise AdapterError(f"unknown GitHub action {str(action)[:40]!r}", retryable=False)

    # --- create_issue ----------------------------------------------------------------------

    async def _create_issue(self, payload: dict[str, Any]) -> Sent:
        line = marker_line(payload.get("marker"))
        title, body = payload.get("title"), payload.get("body")
        if not isinstance(title, str) or not title.strip():
            raise AdapterError("GitHub issue without a title refused", retryable=False)
        if not isinstance(body, str):
            raise AdapterError("GitHub issue without a body refused", retryable=False)
        request: dict[str, Any] = {
            "title": title,
            "body": with_marker(body, line),
            "labels": _names(payload, "labels", required=True),
        }
        assignees = _names(payload, "assignees", required=False)
        if assignees:
            request["assignees"] = assignees
        async with self._exclusive(f"issue {line}"):
            found = await self._find_issue(line)
            if found is not None:
                return Sent(200, {**found, "existing": True})
            response = await self._post("/issues", request)
        return Sent(response.status_code, self._created_issue(response))

    async def _find_issue(self, line: str) -> dict[str, Any] | None:
        response = await self._get(
            "/issues",
            params={
                "state": "all",
                "sort": "created",
                "direction": "desc",
                "per_page": PER_PAGE,
            },
        )
        items = json_of(response, NAME, "issues list")
        if not isinstance(items, list):
            raise malformed(NAME, "issues list")
        for item in items:
            if not isinstance(item, dict):
                raise malformed(NAME, "issues list")
            if "pull_request" in item:  # pull requests are issues too, to this endpoint
                continue
            if _carries(item.get("body"), line):
                return _issue_info(item, "issues list")
        return None

    def _created_issue(self, response: httpx.Response) -> dict[str, Any]:
        try:
            return _issue_info(json_of(response, NAME, "created issue"), "created issue")
        except AdapterError as error:
            raise AdapterError(
                f"{error} (HTTP {response.status_code}); the issue may exist, and a later retry "
                "finds it by its marker instead of creating another",
                retryable=False,
                status_code=response.status_code,
            ) from None

    # --- comment ---------------------------------------------------------------------------

    async def _comment(self, payload: dict[str, Any]) -> Sent:
        line = marker_line(payload.get("marker"))
        body = payload.get("body")
        if not isinstance(body, str) or not body.strip():
            raise AdapterError("GitHub comment without a body refused", retryable=False)
        only_if_open = payload.get("only_if_open", False)
        if not isinstance(only_if_open, bool):
            raise AdapterError("GitHub comment only_if_open must be true or false", retryable=False)
        number = _issue_number(payload)
        path = f"/issues/{number}"
        async with self._exclusive(f"comment {number} {line}"):
            if only_if_open:
                issue = json_of(await self._get(path), NAME, "issue")
                state = issue.get("state") if isinstance(issue, dict) else None
                if state not in ("open", "closed"):
                    raise malformed(NAME, "issue (state)")
                if state == "closed":
                    return Sent(200, {"skipped": "issue closed"})
            found = await self._find_comment(path, line)
            if found is not None:
                return Sent(200, {"comment_id": found, "existing": True})
            response = await self._post(f"{path}/comments", {"body": with_marker(body, line)})
        return Sent(response.status_code, self._created_comment(response))

    async def _find_comment(self, path: str, line: str) -> int | None:
        """The id of the comment carrying ``line`` among the first and the last 100."""
        response = await self._get(f"{path}/comments", params={"per_page": PER_PAGE})
        found = _comment_carrying(json_of(response, NAME, "comments list"), line)
        last = _last_page(response)
        if found is None and last is not None:
            response = await self._get(
                f"{path}/comments", params={"per_page": PER_PAGE, "page": last}
            )
            found = _comment_carrying(json_of(response, NAME, "comments list"), line)
        return found

    def _created_comment(self, response: httpx.Response) -> dict[str, Any]:
        data = _json_or_none(response)
        comment_id = data.get("id") if isinstance(data, dict) else None
        url = data.get("html_url") if isinstance(data, dict) else None
        if not is_int(comment_id) or not isinstance(url, str):
            raise AdapterError(
                f"GitHub sent a malformed created comment (HTTP {response.status_code}); the "
                "comment may exist, and a later retry finds it by its marker instead of adding "
                "another",
                retryable=False,
                status_code=response.status_code,
            )
        return {"comment_id": comment_id, "comment_url": url}

    # --- HTTP ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        """One search-then-create at a time per marker, so two calls cannot both create."""
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            yield

    async def _get(self, path: str, *, params: dict[str, Any] | None = None) -> httpx.Response:
        return await self._call("GET", path, params=params)

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        async with self._limiter:
            return await self._call("POST", path, json=body)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        response = await send_request(
            self._client,
            VENDOR,
            method,
            self._repo + path,
            json=json,
            params=params,
            headers=self._headers,
        )
        error = self._classify(response)
        if error is None:
            return response
        request_id = response.headers.get("x-github-request-id", "")
        if _REQUEST_ID.fullmatch(request_id) and self._token not in request_id:
            raise AdapterError(
                f"{error} (x-github-request-id {request_id})",
                retryable=error.retryable,
                retry_after=error.retry_after,
                status_code=error.status_code,
            )
        raise error

    def _classify(self, response: httpx.Response) -> AdapterError | None:
        """GitHub's rules: 429 or a rate-limit 403 waits; 5xx and 408 retry; the rest is final."""
        code = response.status_code
        if 200 <= code < 300:
            return None
        message = self._message(response)
        if code == 429 or (code == 403 and _is_rate_limit(response, message)):
            return AdapterError(
                f"{VENDOR} answered HTTP {code} (rate limit)",
                retryable=True,
                retry_after=rate_limit_wait(response),
                status_code=code,
            )
        error = classify_response(VENDOR, response)
        assert error is not None
        if error.retryable or not message:
            return error
        return AdapterError(
            f"{error}: {message}",
            retryable=False,
            status_code=error.status_code,
        )

    def _message(self, response: httpx.Response) -> str:
        """GitHub's error ``message`` (and 422 field errors), redacted, printable, bounded."""
        data = _json_or_none(response)
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            return ""
        text = data["message"]
        errors = data.get("errors")
        if isinstance(errors, list):
            details = [
                f"{e.get('field')} {e.get('code')}"
                for e in errors[:3]
                if isinstance(e, dict) and e.get("field") and e.get("code")
            ]
            if details:
                text += f" [{', '.join(details)}]"
        text = _UNPRINTABLE.sub(" ", text.replace(self._token, "***"))
        return text[:_MAX_ECHO].strip()


def rate_limit_wait(response: httpx.Response) -> float:
    """Seconds to wait after a rate-limit answer, in GitHub's documented order: ``retry-after``;
    else, when ``x-ratelimit-remaining`` is 0, until ``x-ratelimit-reset`` (epoch seconds,
    measured against the response's ``Date`` when present); else one minute."""
    waited = retry_after_of(response)
    if waited is not None:
        return waited
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    if response.headers.get("x-ratelimit-remaining", "").strip() == "0" and reset.isdigit():
        now = _server_time(response)
        return max(float(int(reset)) - (time.time() if now is None else now), 0.0)
    return RATE_LIMIT_MIN_WAIT


def _is_rate_limit(response: httpx.Response, message: str) -> bool:
    return (
        response.headers.get("x-ratelimit-remaining", "").strip() == "0"
        or "retry-after" in response.headers
        or "rate limit" in message.lower()
    )


def _server_time(response: httpx.Response) -> float | None:
    date = response.headers.get("date")
    if date is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _last_page(response: httpx.Response) -> int | None:
    """The ``rel="last"`` page number of a paginated reply (never its URL: we build our own)."""
    last = response.links.get("last", {}).get("url")
    if not last:
        return None
    try:
        page = httpx.URL(last).params.get("page", "")
    except httpx.InvalidURL:
        return None
    if not page.isdigit() or not 1 < int(page) <= MAX_LAST_PAGE:
        return None
    return int(page)


def _carries(body: object, line: str) -> bool:
    """Whether ``body``'s last non-blank line is exactly the marker line."""
    return isinstance(body, str) and body.rstrip().rsplit("\n", 1)[-1].strip() == line


def _comment_carrying(items: Any, line: str) -> int | None:
    if not isinstance(items, list):
        raise malformed(NAME, "comments list")
    for item in items:
        if not isinstance(item, dict):
            raise malformed(NAME, "comments list")
        if _carries(item.get("body"), line):
            comment_id = item.get("id")
            if not is_int(comment_id):
                raise malformed(NAME, "comments list (id)")
            return comment_id
    return None


def _issue_info(item: Any, what: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise malformed(NAME, what)
    number, url = item.get("number"), item.get("html_url")
    if not is_int(number) or number < 1 or not isinstance(url, str):
        raise malformed(NAME, what)
    return {"issue_number": number, "issue_url": url}


def _issue_number(payload: dict[str, Any]) -> int:
    refs = payload.get("refs")
    issue = refs.get("issue") if isinstance(refs, dict) else None
    number = issue.get("issue_number") if isinstance(issue, dict) else None
    if not is_int(number) or number < 1:
        raise AdapterError(
            "GitHub comment refused: its issue was never created (no refs.issue.issue_number)",
            retryable=False,
        )
    return number


def _names(payload: dict[str, Any], key: str, *, required: bool) -> list[str]:
    value = payload.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise AdapterError(f"GitHub issue {key} must be a list of names", retryable=False)
    return value


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
