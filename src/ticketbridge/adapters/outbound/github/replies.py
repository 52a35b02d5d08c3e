"""What GitHub's successful answers must hold: issues, comments, and the last page's number."""

from __future__ import annotations

from typing import Any

import httpx

from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.github.errors import NAME, json_or_none
from ticketbridge.adapters.outbound.github.markers import carries
from ticketbridge.adapters.outbound.http import is_int, malformed

MAX_LAST_PAGE = 10_000  # a bound on the page number a server's Link header may send us to


def created_issue(response: httpx.Response) -> dict[str, Any]:
    """The number and URL of the issue a POST created, or a final error saying it may exist."""
    try:
        return issue_info(json_or_none(response), "created issue")
    except AdapterError:
        raise _unconfirmed(response, "issue", "creating another") from None


def created_comment(response: httpx.Response) -> dict[str, Any]:
    """The id and URL of the comment a POST created, or a final error saying it may exist."""
    data = json_or_none(response)
    comment_id = data.get("id") if isinstance(data, dict) else None
    url = data.get("html_url") if isinstance(data, dict) else None
    if not is_int(comment_id) or not isinstance(url, str):
        raise _unconfirmed(response, "comment", "adding another")
    return {"comment_id": comment_id, "comment_url": url}


def _unconfirmed(response: httpx.Response, what: str, instead: str) -> AdapterError:
    """Final: GitHub's 2xx does not describe what it created, which may therefore exist."""
    return AdapterError(
        f"GitHub sent a malformed created {what} (HTTP {response.status_code}); the {what} may "
        f"exist, and a later retry finds it by its marker instead of {instead}",
        retryable=False,
        status_code=response.status_code,
    )


def last_page(response: httpx.Response) -> int | None:
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


def carrying(items: Any, line: str, what: str) -> dict[str, Any] | None:
    """The first listed issue or comment whose body carries the marker ``line``, or None.

    Pull requests are skipped: to the issues endpoint they are issues too.
    """
    if not isinstance(items, list):
        raise malformed(NAME, what)
    for item in items:
        if not isinstance(item, dict):
            raise malformed(NAME, what)
        if "pull_request" not in item and carries(item.get("body"), line):
            return item
    return None


def comment_id(item: dict[str, Any]) -> int:
    """The id of a listed comment, or ``malformed``."""
    value = item.get("id")
    if not is_int(value):
        raise malformed(NAME, "comments list (id)")
    return value


def issue_info(item: Any, what: str) -> dict[str, Any]:
    """The number and URL of an issue object, or ``malformed``."""
    if not isinstance(item, dict):
        raise malformed(NAME, what)
    number, url = item.get("number"), item.get("html_url")
    if not is_int(number) or number < 1 or not isinstance(url, str):
        raise malformed(NAME, what)
    return {"issue_number": number, "issue_url": url}
