"""The hidden marker that makes each GitHub issue or comment findable, and so created once.

GitHub's issues API takes no idempotency key, so every created body ends with a hidden marker
line, ``<!-- ticketbridge:{marker} -->``, and every create looks for it first. Only the last
non-blank line of a body counts as its marker, so a marker quoted from customer text inside a
body cannot make another effect look done. A marker is percent-encoded into a safe alphabet
(``>`` and every second ``-`` of a run included), so it can never close the comment.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ticketbridge.adapters.outbound.errors import AdapterError

# GitHub refuses longer issue and comment bodies with 422 "body is too long (maximum is 65536
# characters)"; a long body is cut so the marker (and the issue) survive.
MAX_BODY = 65_536
TRUNCATED = "\n\n...(truncated by ticketbridge)"
MARKER_PREFIX = "ticketbridge:"
MAX_MARKER = 200
_MARKER_SAFE = "/:@+=,"  # besides letters, digits and "_.-~", which quote() never escapes
_DASH_RUN = re.compile(r"-(?=-)")


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


def carries(body: object, line: str) -> bool:
    """Whether ``body``'s last non-blank line is exactly the marker line."""
    return isinstance(body, str) and body.rstrip().rsplit("\n", 1)[-1].strip() == line
