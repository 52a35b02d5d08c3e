"""Database URLs: which driver a URL means, and how a URL is shown in logs."""

from __future__ import annotations

import sqlalchemy as sa


def normalise_url(url: str) -> str:
    """Pick our drivers: ``postgresql://`` means psycopg 3, ``sqlite://`` the stdlib module."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact_url(url: str) -> str:
    """The URL without its password (``user:***@``, and ``?password=***`` as libpq also
    takes it), for logs."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"
    hidden = {k: "***" for k in parsed.query if k.lower() in ("password", "sslpassword")}
    text = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return text.replace("=%2A%2A%2A", "=***")
