"""GitHub's failure answers as AdapterErrors: rate limits wait, the rest follows the shared rules.

Rate-limit answers (429, or a 403 that says so) are retryable after ``retry-after``, else
``x-ratelimit-reset``, else 60 s. GitHub's own error message is kept on final answers, with the
token redacted.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from ticketbridge.adapters.outbound.errors import (
    AdapterError,
    classify_response,
    retry_after_of,
    server_now,
)

VENDOR = "github"
NAME = "GitHub"  # as messages show it
# GitHub: "Otherwise, wait for at least one minute before retrying."
RATE_LIMIT_MIN_WAIT = 60.0
_MAX_ECHO = 200
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
# A reset time as epoch seconds: ASCII digits, short enough to stay a float.
_EPOCH = re.compile(r"[0-9]{1,12}")


def classify(response: httpx.Response, token: str) -> AdapterError | None:
    """GitHub's rules: 429 or a rate-limit 403 waits; 5xx and 408 retry; the rest is final."""
    code = response.status_code
    if 200 <= code < 300:
        return None
    message = _message(response, token)
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


def _message(response: httpx.Response, token: str) -> str:
    """GitHub's error ``message`` (and 422 field errors), redacted, printable, bounded."""
    data = json_or_none(response)
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
    text = _UNPRINTABLE.sub(" ", text.replace(token, "***"))
    return text[:_MAX_ECHO].strip()


def rate_limit_wait(response: httpx.Response) -> float:
    """Seconds to wait after a rate-limit answer, in GitHub's documented order: ``retry-after``;
    else, when ``x-ratelimit-remaining`` is 0, until ``x-ratelimit-reset`` (epoch seconds,
    measured against the response's ``Date`` when present); else one minute."""
    waited = retry_after_of(response)
    if waited is not None:
        return waited
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    if response.headers.get("x-ratelimit-remaining", "").strip() == "0" and _EPOCH.fullmatch(reset):
        date = server_now(response)
        now = time.time() if date is None else date.timestamp()
        return max(float(int(reset)) - now, 0.0)
    return RATE_LIMIT_MIN_WAIT


def _is_rate_limit(response: httpx.Response, message: str) -> bool:
    return (
        response.headers.get("x-ratelimit-remaining", "").strip() == "0"
        or "retry-after" in response.headers
        or "rate limit" in message.lower()
    )


def json_or_none(response: httpx.Response) -> Any:
    """The answer's JSON document, or None when it holds none."""
    try:
        return response.json()
    except ValueError:
        return None
