"""GitHub REST adapter: follow-up issues and comments, each created at most once.

Every create looks for its marker first (see ``markers``):

- ``create_issue`` lists the repository's newest 100 issues (``state=all``, pull requests
  skipped) and returns the one whose body ends with the marker line; only when none does is the
  issue POSTed. An ambiguous failure (a timeout after GitHub committed the issue) therefore
  yields exactly one issue: the retry finds the first.
- ``comment`` does the same with the issue's comments (the first page of 100 and, when there
  are more, the last page, where a recent attempt would be), after an optional check that the
  issue is still open.

Limits: the search sees only the newest 100 issues (or the first and last 100 comments), and
the per-marker lock guards one process only; the effect store's own ticket→issue map remains
the primary record. Content-creating POSTs pass through a local budget (75 a minute by default,
under GitHub's documented 80 a minute; the 500 an hour is left to GitHub's own answers); GETs do
not. The token never appears in errors or ``repr``.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from ticketbridge.adapters.outbound.errors import AdapterError, send_request
from ticketbridge.adapters.outbound.github.errors import NAME, VENDOR, classify
from ticketbridge.adapters.outbound.github.markers import marker_line, with_marker
from ticketbridge.adapters.outbound.github.replies import (
    carrying,
    comment_id,
    created_comment,
    created_issue,
    issue_info,
    last_page,
)
from ticketbridge.adapters.outbound.http import is_int, json_of, malformed
from ticketbridge.adapters.outbound.ports import Sent
from ticketbridge.adapters.outbound.ratelimit import RollingWindowLimiter

API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"
USER_AGENT = "ticketbridge"
PER_PAGE = 100
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_TOKEN = re.compile(r"[\x21-\x7e]+")
_REQUEST_ID = re.compile(r"[A-Za-z0-9:._-]{1,64}")


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
        return Sent(response.status_code, created_issue(response))

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
        found = carrying(json_of(response, NAME, "issues list"), line, "issues list")
        return None if found is None else issue_info(found, "issues list")

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
        return Sent(response.status_code, created_comment(response))

    async def _find_comment(self, path: str, line: str) -> int | None:
        """The id of the comment carrying ``line`` among the first and the last 100."""
        response = await self._get(f"{path}/comments", params={"per_page": PER_PAGE})
        found = carrying(json_of(response, NAME, "comments list"), line, "comments list")
        last = last_page(response)
        if found is None and last is not None:
            response = await self._get(
                f"{path}/comments", params={"per_page": PER_PAGE, "page": last}
            )
            found = carrying(json_of(response, NAME, "comments list"), line, "comments list")
        return None if found is None else comment_id(found)

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
        error = classify(response, self._token)
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
