"""The one error type outbound adapters raise: it says whether, and when, to try again."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime
from typing import Any

import httpx

# Status classification in one place (alertmanager's Retrier.Check): 2xx ok, 5xx and the
# listed codes retry, every other answer is final.
RETRYABLE_STATUS = frozenset({408, 425, 429})
# The longest Retry-After honoured (seconds): the longest real vendor window (GitHub's hourly
# rate limit); anything later is capped here, and a page held longer would be useless anyway.
MAX_RETRY_AFTER = 3600.0
_DELTA_SECONDS = re.compile(r"[0-9]+")


class AdapterError(Exception):
    """A vendor call failed. ``retryable`` says whether a later attempt may succeed;
    ``retry_after`` (seconds) is the earliest the vendor allows it; ``status_code`` is the
    HTTP answer when there was one. The message never contains credentials or URLs."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status_code = status_code


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (ASCII delta-seconds or HTTP-date),
    capped at MAX_RETRY_AFTER; None for anything else (the caller's backoff applies)."""
    if value is None:
        return None
    value = value.strip(" \t")
    if _DELTA_SECONDS.fullmatch(value):
        # Compared as text first: a 400-digit number never becomes an int or a float.
        digits = value.lstrip("0") or "0"
        return float(digits) if len(digits) <= 5 else MAX_RETRY_AFTER
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def classify_response(vendor: str, response: httpx.Response) -> AdapterError | None:
    """None for a 2xx; otherwise the AdapterError this answer means."""
    code = response.status_code
    if 200 <= code < 300:
        return None
    retryable = code >= 500 or code in RETRYABLE_STATUS
    return AdapterError(
        f"{vendor} answered HTTP {code}",
        retryable=retryable,
        retry_after=retry_after_of(response) if retryable else None,
        status_code=code,
    )


def server_now(response: httpx.Response) -> datetime | None:
    """The time the response's ``Date`` header states (UTC when it names no zone), or None."""
    date = response.headers.get("date")
    if date is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def retry_after_of(response: httpx.Response) -> float | None:
    """The response's ``Retry-After`` in seconds. An HTTP-date is measured against the
    response's own ``Date`` header when present, so our clock's skew does not matter."""
    return parse_retry_after(response.headers.get("retry-after"), now=server_now(response))


def transport_error(vendor: str, exc: httpx.TransportError) -> AdapterError:
    """A timeout or connection failure: always retryable. Only the class name is kept,
    because httpx's messages can carry the request URL (a credential for VictorOps)."""
    return AdapterError(f"{vendor} unreachable: {type(exc).__name__}", retryable=True)


def unexpected_error(vendor: str, exc: Exception) -> AdapterError:
    """What any other exception from a delivery (its guard, the adapter, the response's
    handling: a body that cannot be decoded, invalid JSON on a 2xx...) means: a retryable
    failure, named by its class only (messages can carry URLs, which can be credentials)."""
    if isinstance(exc, httpx.TransportError):
        return transport_error(vendor, exc)
    return AdapterError(f"{vendor} call failed: {type(exc).__name__}", retryable=True)


def settled(response: httpx.Response) -> httpx.Response:
    """``response`` (read and closed) without httpx's reference cycle: its ``stream`` (a
    ``BoundAsyncStream``) refers back to it, so each response, and the connection pool's
    request objects it holds (about 40 objects per call), is freed only by the cyclic garbage
    collector; at 100 pages/s its young-generation passes took 8-28 ms each, the page
    latency's worst. The read body stands in for the stream, which nothing needs any more."""
    if response.is_closed:
        response.stream = httpx.ByteStream(response.content)
    return response


async def send_request(
    client: httpx.AsyncClient, vendor: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """``client.request`` with its failures raised as a retryable AdapterError that names only
    the exception class (never the URL, which can be a credential), its cause suppressed."""
    try:
        return settled(await client.request(method, url, **kwargs))
    except httpx.TransportError as exc:
        raise transport_error(vendor, exc) from None
    except httpx.RequestError as exc:
        raise AdapterError(
            f"{vendor} request failed: {type(exc).__name__}", retryable=True
        ) from None


async def post_for_status(
    client: httpx.AsyncClient, vendor: str, url: str, **kwargs: Any
) -> httpx.Response:
    """POST where the status line and headers are the whole answer: the body is read raw and
    dropped, never decoded, so a broken compressed body, invalid JSON or a connection reset
    after the headers does not hide what the vendor answered. Failures before an answer are
    raised as in ``send_request``."""
    try:
        response = await client.send(client.build_request("POST", url, **kwargs), stream=True)
    except httpx.TransportError as exc:
        raise transport_error(vendor, exc) from None
    except httpx.RequestError as exc:
        raise AdapterError(
            f"{vendor} request failed: {type(exc).__name__}", retryable=True
        ) from None
    try:
        if not response.is_stream_consumed:  # (a mock transport's answer may be read already)
            async for _chunk in response.aiter_raw():
                pass  # read to the end, so the connection can be reused
    except httpx.HTTPError:
        pass  # the answer was the status line; its connection is closed below
    finally:
        await response.aclose()
    # (As in ``settled``: drop the stream that refers back to the response.)
    response.stream = httpx.ByteStream(b"")
    return response
